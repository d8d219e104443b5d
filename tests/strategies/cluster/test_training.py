"""Cluster mode with real processes on 127.0.0.1: training, crashed and stalled workers, a killed parameter server."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

DIGITS = ["--experiment", "digits", "--aggregator", "median", "--nb-decl-byz-workers", "1"]


def listening_sockets(pid: int) -> list[str]:
  """The TCP sockets in LISTEN state, and the UDP sockets, that process `pid` holds."""
  inodes = set()
  for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
      target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
      continue
    if target.startswith("socket:["):
      inodes.add(target[8:-1])
  found = []
  for table in ("tcp", "tcp6", "udp", "udp6"):
    for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
      fields = line.split()
      listening = fields[3] == "0A" if table.startswith("tcp") else True
      if fields[9] in inodes and listening:
        found.append(f"{table} {fields[1]}")
  return found


def test_mnist_with_a_byzantine_process_and_a_parameter_server_without_ports(make_cluster, shared_data):
  cluster = make_cluster(4)
  cluster.start_workers({3: ["--attack", "little"]})
  ps = cluster.start_ps("--experiment", "mnist", "--experiment-args", f"idx-dir:{shared_data / 'mnist'}",
                        "--aggregator", "median", "--nb-decl-byz-workers", "1", "--nb-real-byz-workers", "1",
                        "--max-steps", "300", "--evaluation-delta", "1000", "--evaluation-file", "eval.tsv",
                        "--log-period", "1")
  cluster.wait_for_step(cluster.root / "ps.log", ps, 1)
  # The trusted parameter server exposes nothing: no listening TCP socket, no UDP socket at all.
  assert listening_sockets(ps.pid) == []
  assert ps.wait(timeout=600) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  (step, accuracy), = cluster.evaluations(cluster.root / "eval.tsv")
  assert step == 300 and accuracy > 0.85
  assert "Byzantine with little" in (cluster.root / "worker-3.log").read_text()


def test_stalled_killed_and_restarted_workers(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers()
  log = cluster.root / "ps.log"
  ps = cluster.start_ps(*DIGITS, "--max-steps", "0", "--step-timeout", "2", "--log-period", "0.5")
  step = cluster.wait_for_step(log, ps, 20)

  # SIGSTOP: the step goes on without the stalled worker, which costs one deadline, not one per step.
  os.kill(cluster.workers[1].pid, signal.SIGSTOP)
  stalled = time.monotonic()
  step = cluster.wait_for_step(log, ps, step + 60)
  assert time.monotonic() - stalled < 20
  assert "goes on without worker 1" in log.read_text()
  os.kill(cluster.workers[1].pid, signal.SIGCONT)

  # SIGKILL: the same; a restarted worker gets the job again and rejoins with the current weights.
  cluster.workers[1].kill()
  step = cluster.wait_for_step(log, ps, step + 40)
  cluster.start_worker(1)
  deadline = time.monotonic() + 60
  while "worker 1 at 127.0.0.1:" not in "".join(re.findall(r"worker \d at \S+ rejoined the run", log.read_text())) \
      and time.monotonic() < deadline:
    assert ps.poll() is None
    time.sleep(0.2)
  assert "rejoined the run" in log.read_text()
  step = cluster.wait_for_step(log, ps, step + 20)

  # Two workers down: median with f=1 on 2 rows no longer holds, and training stops, saying why.
  cluster.workers[1].kill()
  cluster.workers[2].kill()
  assert ps.wait(timeout=30) == 3
  text = log.read_text()
  assert "training stops here" in text and "needs at most 1 absent" in text
  assert f"worker 1 at 127.0.0.1:{cluster.ports[1]}" in text and f"worker 2 at 127.0.0.1:{cluster.ports[2]}" in text


def test_cluster_mode_trains_as_local_mode_does(make_cluster):
  # The same batches, clipping, worker momentum and local steps: the same model, in one process or five.
  cluster = make_cluster(3)
  cluster.start_workers()
  common = ["--experiment", "digits", "--aggregator", "average", "--max-steps", "20", "--evaluation-delta", "10",
            "--gradient-clip", "2", "--momentum", "0.9", "--momentum-at", "worker", "--local-steps", "2",
            "--learning-rate", "exponential", "--learning-rate-args", "decay-steps:5", "decay-rate:0.5",
            "--checkpoint-dir", "-", "--no-wait"]
  ps = cluster.start_ps(*common, "--evaluation-file", "cluster.tsv")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  local = cluster.start_local(*common, "--evaluation-file", "local.tsv")
  assert local.wait(timeout=300) == 0, (cluster.root / "local.log").read_text()[-3000:]
  on_cluster, in_process = (cluster.evaluations(cluster.root / name) for name in ("cluster.tsv", "local.tsv"))
  assert [step for step, _ in on_cluster] == [step for step, _ in in_process] == [10]
  losses = [[float(line.split("loss:")[1]) for line in (cluster.root / name).read_text().splitlines()]
            for name in ("cluster.tsv", "local.tsv")]
  assert abs(losses[0][0] - losses[1][0]) < 1e-4 * max(1.0, losses[1][0]), losses
  assert on_cluster == in_process


def test_killed_parameter_server_resumes_from_its_checkpoint(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers()
  common = [*DIGITS, "--checkpoint-dir", "ckpt", "--checkpoint-delta", "10", "--evaluation-delta", "10",
            "--log-period", "0.2"]
  ps = cluster.start_ps(*common, "--max-steps", "0", log="first.log")
  cluster.wait_for_step(cluster.root / "first.log", ps, 55)
  ps.kill()
  ps.wait(timeout=10)
  again = cluster.start_ps(*common, "--max-steps", "40", log="second.log")
  assert again.wait(timeout=300) == 0, (cluster.root / "second.log").read_text()[-3000:]
  resumed = int(re.search(r"Resumed from \S+ckpt-(\d+) at step", (cluster.root / "second.log").read_text())[1])
  assert resumed >= 50
  # No evaluation lost, none twice: every tenth step is there once, in order.
  steps = [step for step, _ in cluster.evaluations(cluster.root / "ckpt" / "eval")]
  assert steps == list(range(10, resumed + 41, 10))
