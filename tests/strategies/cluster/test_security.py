"""Rogues against a cluster on 127.0.0.1: each attempt fails, and training goes on."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time

import grpc
import numpy as np

from strategies.cluster import credentials, wire, worker

ROGUE = pathlib.Path(__file__).with_name("rogue_worker.py")
DIGITS = ["--experiment", "digits", "--aggregator", "median", "--nb-decl-byz-workers", "1", "--log-period", "0.2"]


def start_rogue(cluster, identity: int, port: int):
  log = cluster.root / f"rogue-{port}.log"
  process = cluster.spawn([sys.executable, str(ROGUE), str(cluster.credentials), str(identity), str(port)], log)
  cluster.wait_for(log, "rogue serving on", process)
  return process


def test_a_worker_with_valid_credentials_sending_bad_rows_is_refused(make_cluster):
  cluster = make_cluster(4)
  for index in range(3):
    cluster.start_worker(index, wait=False)
  start_rogue(cluster, 3, cluster.ports[3])
  for index in range(3):
    cluster.wait_for(cluster.root / f"worker-{index}.log", "serving on", cluster.workers[index])
  ps = cluster.start_ps(*DIGITS, "--max-steps", "30")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  text = (cluster.root / "ps.log").read_text()
  assert "Trained 30 steps" in text
  # Replayed, malformed and miscounted rows are refused and counted, and the oversized one gRPC refuses unread.
  # Once refused, the rogue is absent: its later rows count only if in before the honest ones, so under load
  # some steps see its row late instead (tests/strategies/cluster/test_wire.py refuses each kind on its own).
  summary = text.split("Refused rows: ", 1)[1].splitlines()[0]
  assert re.fullmatch(r"(worker 3 (count|magic|size|step) x\d+(, )?)+", summary), summary
  assert "Refused the row of worker 0" not in text and "Refused the row of worker 1" not in text


def test_a_worker_posing_as_another_is_refused(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers()
  ps = cluster.start_ps(*DIGITS, "--max-steps", "0", "--step-timeout", "2")
  log = cluster.root / "ps.log"
  step = cluster.wait_for_step(log, ps, 5)
  # Worker 1 goes; at its address, a task holding worker 3's valid credentials poses as worker 1.
  cluster.workers[1].kill()
  cluster.workers[1].wait(timeout=10)
  start_rogue(cluster, 3, cluster.ports[1])
  step = cluster.wait_for_step(log, ps, step + 40)
  assert ps.poll() is None
  ps.terminate()
  assert ps.wait(timeout=30) == 143
  # Its rows never counted: TLS refused it as worker 1 (no row of NaNs ever reached the rule).
  assert "Refused the row of worker 1" not in log.read_text()
  assert "goes on without worker 1" in log.read_text()


def test_a_rogue_on_the_host_reaches_no_worker(make_cluster):
  cluster = make_cluster(2)
  cluster.start_workers()
  address = f"127.0.0.1:{cluster.ports[0]}"
  request = wire.encode_weights(0, np.zeros(1, np.float32))
  ca, key, cert = credentials.read_identity(cluster.credentials, "worker-1")  # a valid worker's, not the PS's
  attempts = {
      "plaintext": grpc.insecure_channel(address),
      "TLS, no client certificate": grpc.secure_channel(address, grpc.ssl_channel_credentials(ca), options=[
          ("grpc.ssl_target_name_override", "worker-0.aggregathor")]),
      "TLS, another worker's certificate": grpc.secure_channel(address, grpc.ssl_channel_credentials(
          ca, key, cert), options=[("grpc.ssl_target_name_override", "worker-0.aggregathor")]),
  }
  codes = {}
  for name, channel in attempts.items():
    try:
      channel.unary_unary(worker.COMPUTE)(request, timeout=5)
    except grpc.RpcError as error:
      codes[name] = error.code()
    channel.close()
  assert codes["plaintext"] == grpc.StatusCode.UNAVAILABLE
  assert codes["TLS, no client certificate"] == grpc.StatusCode.UNAVAILABLE
  assert codes["TLS, another worker's certificate"] == grpc.StatusCode.PERMISSION_DENIED
  # TensorFlow's own runtime, as a rogue would use it to run read_file or assign a variable there: it cannot connect.
  marker = cluster.root / "written-by-rogue"
  script = (f"import tensorflow as tf\ntf.config.experimental_connect_to_host('{address}', job_name='rogue')\n"
            f"with tf.device('/job:rogue/replica:0/task:0/device:CPU:0'):\n"
            f"  tf.io.write_file('{marker}', tf.io.read_file('/proc/self/stat'))\n")
  started = time.monotonic()
  try:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
  except subprocess.TimeoutExpired:
    pass  # it hung on the TLS port: it got nowhere either
  assert not marker.exists() and time.monotonic() - started < 60
  assert all(process.poll() is None for process in cluster.workers.values())  # the workers still serve
