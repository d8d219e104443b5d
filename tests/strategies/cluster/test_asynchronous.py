"""AdaComp's asynchronous server on real worker processes, with compression, and its Supervisor (the evaluator task).

Builds on strategies/asynchronous.py (the staleness rule, checked by hand in tests/strategies/test_asynchronous.py)
and strategies/supervisor.py.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def supervise(cluster: pathlib.Path, run: pathlib.Path, idle_timeout: float) -> subprocess.CompletedProcess:
  """deploy.py's Supervisor task over `run`, to its end."""
  return subprocess.run(
      [sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(cluster), "--id", "evaluator:0",
       "--supervise", str(run), "--idle-timeout", str(idle_timeout)], cwd=cluster.parent, capture_output=True,
      text=True, timeout=300, check=False,
      env={"PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})


def test_asynchronous_adacomp_on_worker_processes_and_the_supervisor_evaluates_its_checkpoints(make_cluster):
  cluster = make_cluster(3)
  cluster.start_workers()
  run = cluster.root / "run"
  ps = cluster.start_ps("--experiment", "digits", "--asynchronous", "--compression", "adacomp",
                        "--compression-args", "compression_rate:0.05", "--learning-rate-args", "initial-rate:0.1",
                        "--max-steps", "150", "--evaluation-delta", "1000", "--checkpoint-dir", str(run),
                        "--checkpoint-delta", "50", "--evaluation-file", "ps.tsv")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  log = (cluster.root / "ps.log").read_text()
  assert "Trained 150 steps" in log and "compressed gradients" in log, log[-2000:]
  # The rows came from the three processes, each on its own batches, applied as they came.
  for index in range(3):
    worker_log = (cluster.root / f"worker-{index}.log").read_text()
    assert "configured (digits" in worker_log
  (step, accuracy), = cluster.evaluations(cluster.root / "ps.tsv")
  assert step == 150 and accuracy > 0.6, accuracy
  # The Supervisor, the cluster's evaluator task, reads the parameter server's checkpoints: the newest (150) when it
  # starts, the same model, so exactly the parameter server's evaluation.
  spec = dict(json.loads(cluster.spec_path.read_text()), evaluator=["127.0.0.1:1"])
  with_evaluator = cluster.root / "with-evaluator.json"
  with_evaluator.write_text(json.dumps(spec))
  supervisor = supervise(with_evaluator, run, idle_timeout=2)
  assert supervisor.returncode == 0, supervisor.stderr[-3000:]
  supervised = (run / "supervisor-eval").read_text().split("\t")
  own = (cluster.root / "ps.tsv").read_text().split("\t")
  assert supervised[1:] == own[1:], (supervised, own)
  # Started again, it finds step 150 done and evaluates nothing more.
  again = supervise(with_evaluator, run, idle_timeout=1)
  assert again.returncode == 0, again.stderr[-3000:]
  assert len((run / "supervisor-eval").read_text().splitlines()) == 1
  assert "0 evaluated" in again.stderr


def test_the_supervisor_is_the_evaluator_job_and_says_what_it_needs(make_cluster, tmp_path):
  cluster = make_cluster(2)
  command = [sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(cluster.spec_path), "--id", "workers:0",
             "--supervise", str(tmp_path)]
  refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                           env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
  assert refused.returncode == 2
  assert "the Supervisor is a task of the evaluator job ('evaluator') given --supervise" in refused.stderr
