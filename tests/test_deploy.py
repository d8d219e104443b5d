"""deploy.py and runner.py --server: a bad cluster, a wrong --id, a port in use or an unreachable worker fail fast and clearly."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(script: str, *args: str, cwd: pathlib.Path) -> tuple[int, str, float]:
  started = time.monotonic()
  result = subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=cwd, env=ENVIRONMENT,
                          capture_output=True, text=True, timeout=120, check=False)
  return result.returncode, result.stderr, time.monotonic() - started


def _cluster(tmp_path: pathlib.Path, ports: list[int]) -> pathlib.Path:
  path = tmp_path / "cluster.json"
  path.write_text(json.dumps({"ps": ["127.0.0.1:1"], "workers": [f"127.0.0.1:{port}" for port in ports]}))
  return path


def test_bad_cluster_json(tmp_path):
  status, err, _ = _run("deploy.py", "--cluster", '{"workers": ["127.0.0.1"]}', "--id", "workers:0", cwd=tmp_path)
  assert status == 2 and 'deploy.py: error: the cluster JSON: task workers:0: expected "host:port"' in err
  status, err, _ = _run("runner.py", "--server", "{oops", "--nb-workers", "2", cwd=tmp_path)
  assert status == 2 and "runner.py: error: the cluster JSON is not valid JSON" in err


def test_wrong_id(tmp_path):
  cluster = str(_cluster(tmp_path, [7001, 7002]))
  for task, message in [("workers:2", "job 'workers' has 2 task(s), indexed 0 to 1"),
                        ("ps:0", "deploy.py starts worker tasks"), ("workers", "expected --id as job:index")]:
    status, err, _ = _run("deploy.py", "--cluster", cluster, "--id", task, cwd=tmp_path)
    assert status == 2 and message in err, err


def test_port_already_in_use(tmp_path):
  holder = socket.socket()
  holder.bind(("127.0.0.1", 0))
  holder.listen()
  port = holder.getsockname()[1]
  try:
    cluster = str(_cluster(tmp_path, [port]))
    assert _run("deploy.py", "--cluster", cluster, "--make-credentials", "creds", cwd=tmp_path)[0] == 0
    status, err, _ = _run("deploy.py", "--cluster", cluster, "--id", "workers:0", "--credentials", "creds",
                          cwd=tmp_path)
    in_graph_status, in_graph_err, _ = _run("deploy.py", "--cluster", cluster, "--id", "workers:0", "--transport",
                                            "tf", cwd=tmp_path)
  finally:
    holder.close()
  assert status == 2 and f"worker 0 cannot listen on 127.0.0.1:{port}" in err, err
  assert in_graph_status == 2 and f"task workers:0 cannot listen on port {port}" in in_graph_err, in_graph_err


def test_in_graph_worker_refuses_an_attack(tmp_path):
  # Its Byzantine behaviour is the parameter server's to simulate: the task runs whatever graph it is sent.
  status, err, _ = _run("deploy.py", "--cluster", str(_cluster(tmp_path, [7001])), "--id", "workers:0",
                        "--transport", "tf", "--attack", "little", cwd=tmp_path)
  assert status == 2 and "give runner.py --attack and --nb-real-byz-workers" in err, err


def test_unreachable_worker(tmp_path):
  sockets = [socket.socket() for _ in range(2)]
  for sock in sockets:
    sock.bind(("127.0.0.1", 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()  # nothing listens there
  cluster = str(_cluster(tmp_path, ports))
  assert _run("deploy.py", "--cluster", cluster, "--make-credentials", "creds", cwd=tmp_path)[0] == 0
  status, err, seconds = _run("runner.py", "--server", cluster, "--credentials", "creds", "--nb-workers", "2",
                              "--max-steps", "1", cwd=tmp_path)
  assert status == 2 and "the workers could not start the run" in err, err[-3000:]
  assert f"worker 1 at 127.0.0.1:{ports[1]}: unreachable" in err and "deploy.py --cluster JSON --id" in err
  assert seconds < 60


def test_worker_count_must_match_and_client_is_refused(tmp_path):
  cluster = str(_cluster(tmp_path, [7001, 7002]))
  status, err, _ = _run("runner.py", "--server", cluster, "--nb-workers", "3", "--max-steps", "1", cwd=tmp_path)
  assert status == 2 and "--nb-workers is 3 but the worker job has 2 task(s)" in err, err[-3000:]
  status, err, _ = _run("runner.py", "--client", "127.0.0.1:7000", cwd=tmp_path)
  assert status == 2 and "TensorFlow's servers execute any graph they are sent" in err


def test_aggregathor_local_cluster_line(tmp_path):
  # The seed's local command line: the worker job is the PS's own, so the workers are simulated in this process.
  status, err, _ = _run("runner.py", "--server", '{"local": ["127.0.0.1:7000"]}', "--ps-job-name", "local",
                        "--wk-job-name", "local", "--ev-job-name", "local", "--experiment", "digits",
                        "--learning-rate-args", "initial-rate:0.05", "--aggregator", "average", "--nb-workers", "4",
                        "--reuse-gpu", "--max-step", "20", "--evaluation-period", "-1", "--checkpoint-period", "-1",
                        "--summary-period", "-1", "--evaluation-delta", "100", "--checkpoint-delta", "-1",
                        "--summary-delta", "-1", "--no-wait", cwd=tmp_path)
  assert status == 0, err[-3000:]
  assert "the 4 workers are simulated in this process" in err
