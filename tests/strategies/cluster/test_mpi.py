"""The MPI transport (strategies.cluster.mpi) under a real `mpirun`: 6 ranks on this machine, the PS and 5 workers.

Skipped without `mpirun` or Horovod (patches/horovod/install.sh), unless AGGREGATHOR_REQUIRE_MPI=1 (as .ci/run
sets it) makes their absence a failure. Each mpirun runs in its own process group, killed by its PID at the end.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent
REQUIRE_MPI = os.environ.get("AGGREGATHOR_REQUIRE_MPI", "") not in ("", "0")
EVALUATION = re.compile(r"\d+\.\d{3}\t(\d+)\taccuracy:(\S+)\tloss:\S+")


def _horovod_with_mpi() -> bool:
  check = subprocess.run([sys.executable, "-c", "import horovod.tensorflow as h, sys; sys.exit(not h.mpi_built())"],
                         capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
  return check.returncode == 0


if not shutil.which("mpirun") or not _horovod_with_mpi():
  _MESSAGE = "no mpirun or no Horovod with MPI here: install them with `make mpi` (see the README's MPI section)"
  if REQUIRE_MPI:
    raise RuntimeError(_MESSAGE + "; AGGREGATHOR_REQUIRE_MPI is set, so this is a failure, not a skip")
  pytest.skip(_MESSAGE, allow_module_level=True)

ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
               # Root in a container (CI): OpenMPI refuses to start ranks as root without both.
               "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               # Few threads per rank: six TensorFlow processes share two cores.
               "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}
# Ranks may share cores; mpirun gives a dying job's ranks 10 s, not 1, between SIGTERM and SIGKILL (some rank
# outlives SIGTERM, so an aborted job always takes that long).
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "odls_base_sigkill_timeout", "10", "-x", "PYTHONPATH",
          "-x", "TF_CPP_MIN_LOG_LEVEL", "-x", "TF_NUM_INTRAOP_THREADS", "-x", "TF_NUM_INTEROP_THREADS"]


def mpirun(command: list[str], log: pathlib.Path, timeout: float = 240) -> tuple[int, str]:
  """Runs an mpirun command line to its end (killed past `timeout`); its exit status and its output."""
  with open(log, "w", encoding="utf-8") as output:
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENVIRONMENT, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
      status = process.wait(timeout)
    except subprocess.TimeoutExpired:
      status = None
    finally:
      try:
        os.killpg(process.pid, signal.SIGKILL)  # mpirun and every rank it started
      except ProcessLookupError:
        pass
      process.wait()
  text = log.read_text(encoding="utf-8")
  assert status is not None, f"mpirun still ran after {timeout} s:\n{text[-3000:]}"
  return status, text


def runner_ranks(nb: int, *args: str) -> list[str]:
  return ["-np", str(nb), sys.executable, "runner.py", "--MPI", *args]


def mnist_args(shared_data, tmp_path, *extra: str) -> list[str]:
  return ["--experiment", "mnist", "--experiment-args", f"idx-dir:{shared_data / 'mnist'}", "--nb-workers", "5",
          "--nb-decl-byz-workers", "1", "--evaluation-file", str(tmp_path / "eval.tsv"), "--log-period", "5",
          *extra]


def evaluations(path: pathlib.Path) -> list[tuple[int, float]]:
  return [(int(m.group(1)), float(m.group(2))) for m in map(EVALUATION.match, path.read_text().splitlines()) if m]


def test_krum_trains_mnist_with_a_real_byzantine_rank(shared_data, tmp_path):
  status, log = mpirun(MPIRUN + runner_ranks(6, *mnist_args(
      shared_data, tmp_path, "--aggregator", "krum", "--nb-real-byz-workers", "1", "--attack", "little",
      "--max-steps", "150", "--evaluation-delta", "50", "--study-period", "10",
      "--study-file", str(tmp_path / "study.tsv"))), tmp_path / "mpirun.log")
  assert status == 0, log[-3000:]
  # Worker 4 (rank 5) ran the attack in its own process; the others are honest.
  assert "Worker 4: job" in log and "Byzantine with little" in log, log[-3000:]
  assert log.count("Byzantine with little") == 1
  steps, accuracies = zip(*evaluations(tmp_path / "eval.tsv"))
  assert steps == (50, 100, 150)
  assert accuracies[-1] > 0.82, accuracies
  # The study sees the ranks' rows as local mode sees its replicas': one selection column per worker, and the
  # Byzantine rank's row as the attack (the last worker's, apart from the honest ones').
  header, *rows = (tmp_path / "study.tsv").read_text().splitlines()
  columns = header.lstrip("# ").split("\t")
  assert "selected/worker-04" in columns and len(rows) == 15
  attack_norms = [float(row.split("\t")[columns.index("attack/norm")]) for row in rows]
  assert all(norm > 0 for norm in attack_norms)


def test_malformed_rows_are_refused_counted_and_left_out(shared_data, tmp_path):
  # Four honest worker ranks and a rogue one; median with f=1 goes on without up to 2 rows.
  status, log = mpirun(MPIRUN + runner_ranks(5, *mnist_args(
      shared_data, tmp_path, "--aggregator", "median", "--max-steps", "30", "--evaluation-delta", "30")) +
      [":", "-np", "1", sys.executable, str(HERE / "rogue_rank.py"), "malformed"], tmp_path / "mpirun.log")
  assert status == 0, log[-3000:]
  # Steps 0-29, six answers in turn: oversized and truncated (size), replayed (step), magic, count, NaNs (kept).
  assert "Refused rows: worker 4 count x5, worker 4 magic x5, worker 4 size x10, worker 4 step x5" in log, log[-3000:]
  assert evaluations(tmp_path / "eval.tsv")[-1][1] > 0.5


@pytest.mark.parametrize("mode, expected", [
    ("dtype", "Mismatched data types"),
    ("stall", "did not complete on every rank within 5 s"),
])
def test_a_rank_that_breaks_the_collective_stops_the_job_with_its_checkpoint(shared_data, tmp_path, mode, expected):
  status, log = mpirun(MPIRUN + runner_ranks(5, *mnist_args(
      shared_data, tmp_path, "--aggregator", "median", "--max-steps", "30", "--step-timeout", "5",
      "--checkpoint-dir", str(tmp_path / "run"))) +
      [":", "-np", "1", sys.executable, str(HERE / "rogue_rank.py"), mode], tmp_path / "mpirun.log")
  assert status == 3, log[-3000:]
  assert expected in log, log[-3000:]
  # Steps 0-2 were applied; the checkpoint holds step 3, and nothing hung.
  assert (tmp_path / "run" / "ckpt-3.index").exists(), log[-3000:]


def test_a_dead_rank_ends_the_job_and_the_run_resumes_from_its_checkpoint(shared_data, tmp_path):
  run = str(tmp_path / "run")
  status, log = mpirun(MPIRUN + runner_ranks(5, *mnist_args(
      shared_data, tmp_path, "--aggregator", "median", "--max-steps", "30", "--step-timeout", "5",
      "--checkpoint-dir", run)) + [":", "-np", "1", sys.executable, str(HERE / "rogue_rank.py"), "die"],
      tmp_path / "died.log")
  assert status != 0
  assert (tmp_path / "run" / "ckpt-3.index").exists(), log[-3000:]
  status, log = mpirun(MPIRUN + runner_ranks(6, *mnist_args(
      shared_data, tmp_path, "--aggregator", "median", "--max-steps", "7", "--evaluation-delta", "10",
      "--checkpoint-dir", run)), tmp_path / "resumed.log")
  assert status == 0, log[-3000:]
  assert "Trained 7 steps" in log
  assert evaluations(tmp_path / "eval.tsv")[-1][0] == 10


def test_keras_fit_over_mpi_with_average_equals_plain_keras(tmp_path):
  status, log = mpirun(MPIRUN + ["-np", "4", sys.executable, str(HERE / "mpi_keras_fit.py")], tmp_path / "fit.log")
  assert status == 0, log[-3000:]
  assert "fit over MPI matches plain Keras" in log, log[-3000:]


def test_runner_outside_mpirun_says_how_to_start_it(tmp_path):
  result = subprocess.run([sys.executable, "runner.py", "--MPI", "--nb-workers", "5"], cwd=REPO_ROOT,
                          env=ENVIRONMENT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "mpirun -np 6 python runner.py --MPI" in result.stderr
  result = subprocess.run([sys.executable, "runner.py", "--MPI", "--server", "{}", "--UDP", "1"], cwd=REPO_ROOT,
                          env=ENVIRONMENT, capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 2
  assert "drop --server, --UDP" in result.stderr



def test_deploy_runs_the_mpi_job_over_the_cluster_hosts(tmp_path):
  cluster = tmp_path / "cluster.json"
  cluster.write_text('{"ps": ["127.0.0.1:7000"], "workers": ["127.0.0.1:7001", "127.0.0.1:7002", '
                     '"127.0.0.1:7003"]}')
  deploy = [sys.executable, "deploy.py", "--cluster", str(cluster), "--MPI", "--mpirun-args",
            "--oversubscribe -x TF_NUM_INTRAOP_THREADS -x TF_NUM_INTEROP_THREADS"]
  runner = ("--experiment digits --aggregator median --nb-decl-byz-workers 1 --nb-real-byz-workers 1 "
            f"--attack empire --max-steps 40 --evaluation-delta 40 --evaluation-file {tmp_path / 'eval.tsv'}")
  dry = subprocess.run(deploy + ["--runner", runner, "--dry-run"], cwd=REPO_ROOT, env=ENVIRONMENT,
                       capture_output=True, text=True, timeout=60, check=True)
  # One rank per task, in the cluster JSON's order, each pinned to its host; the host file counts the tasks.
  assert "127.0.0.1 slots=4" in dry.stderr
  assert dry.stderr.count("-np 1 --host 127.0.0.1") == 4
  assert dry.stderr.count("runner.py --MPI --nb-workers 3 --experiment digits") == 4
  status, log = mpirun(deploy + ["--runner", runner], tmp_path / "deploy.log")
  assert status == 0, log[-3000:]
  assert "Byzantine with empire" in log
  assert evaluations(tmp_path / "eval.tsv")[-1][0] == 40
  bad = subprocess.run(deploy + ["--runner", "--nb-workers 5"], cwd=REPO_ROOT, env=ENVIRONMENT,
                       capture_output=True, text=True, timeout=60, check=False)
  assert bad.returncode == 2
  assert "has --nb-workers 5, and the cluster JSON's worker job 'workers' has 3 task(s)" in bad.stderr


def test_compressed_rows_over_mpi_train_as_local_mode(tmp_path):
  # Each worker rank keeps its own 2-bit residual and sends the packed words; rank 0 decodes before the rule.
  common = ["--experiment", "digits", "--aggregator", "median", "--nb-workers", "3", "--nb-decl-byz-workers", "1",
            "--max-steps", "20", "--evaluation-delta", "10", "--compression", "2bit", "--no-wait"]
  status, log = mpirun(MPIRUN + runner_ranks(4, *common, "--evaluation-file", str(tmp_path / "mpi.tsv")),
                       tmp_path / "mpirun.log")
  assert status == 0, log[-3000:]
  assert "compressed gradients" in log
  local = subprocess.run([sys.executable, "runner.py", *common, "--evaluation-file", str(tmp_path / "local.tsv")],
                         cwd=REPO_ROOT, env=ENVIRONMENT, capture_output=True, text=True, timeout=300, check=False)
  assert local.returncode == 0, local.stderr[-3000:]
  losses = [float((tmp_path / name).read_text().split("loss:")[1]) for name in ("mpi.tsv", "local.tsv")]
  assert abs(losses[0] - losses[1]) < 1e-4 * max(1.0, losses[1]), losses
