"""The in-graph transport (TensorFlow's runtime, trusted networks only) with real processes on 127.0.0.1."""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest

from strategies.cluster import in_graph, spec
from strategies.cluster.spec import Address, ClusterError

TF = ("--transport", "tf")
DIGITS = ["--experiment", "digits", "--aggregator", "median", "--nb-decl-byz-workers", "1", *TF]


def test_trains_with_a_simulated_attack_and_warns_of_what_it_exposes(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers(common=TF)
  ps = cluster.start_ps(*DIGITS, "--nb-real-byz-workers", "1", "--attack", "little", "--max-steps", "150",
                        "--evaluation-delta", "1000", "--evaluation-file", "eval.tsv")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  (step, accuracy), = cluster.evaluations(cluster.root / "eval.tsv")
  assert step == 150 and accuracy > 0.8
  for log in ("ps.log", "worker-0.log"):
    assert "execute any graph anyone who reaches their port sends" in (cluster.root / log).read_text()


def test_a_stalled_or_killed_worker_stops_the_run_with_its_checkpoint_and_a_rerun_resumes(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers(common=TF)
  common = [*DIGITS, "--checkpoint-dir", "ckpt", "--max-steps", "0", "--log-period", "0.2", "--step-timeout", "2"]
  ps = cluster.start_ps(*common, log="first.log")
  cluster.wait_for_step(cluster.root / "first.log", ps, 20)
  # A stalled worker blocks TensorFlow's step without an error: the deadline ends the run.
  cluster.workers[1].send_signal(signal.SIGSTOP)
  stalled = time.monotonic()
  assert ps.wait(timeout=60) == 3
  assert time.monotonic() - stalled < 30
  text = (cluster.root / "first.log").read_text()
  assert "got no gradients from the workers" in text and "within 2 s" in text
  saved = int(re.search(r"Checkpoint saved to \S+ckpt-(\d+)", text)[1])
  assert saved >= 20
  cluster.workers[1].send_signal(signal.SIGCONT)

  # The rerun resumes from that checkpoint; then a killed worker fails the step, and the run stops after saving.
  again = cluster.start_ps(*common, log="second.log")
  cluster.wait_for_step(cluster.root / "second.log", again, saved + 20)
  cluster.workers[2].kill()
  assert again.wait(timeout=60) == 3
  text = (cluster.root / "second.log").read_text()
  assert f"Resumed from ckpt/ckpt-{saved} at step {saved}" in text
  assert "was lost" in text and "training stops here" in text
  assert int(re.search(r"Checkpoint saved to \S+ckpt-(\d+)\s*$", text, re.M)[1]) >= saved + 20


def test_unreachable_workers_are_named_fast():
  ports = [int(address.rsplit(":", 1)[1]) for address in spec.loopback_cluster(2)["workers"]]
  started = time.monotonic()
  with pytest.raises(ClusterError, match=rf"worker 1 at 127.0.0.1:{ports[1]}") as error:
    in_graph.wait_until_reachable([Address("127.0.0.1", ports[0]), Address("127.0.0.1", ports[1])], 1.0)
  assert f"worker 0 at 127.0.0.1:{ports[0]}" in str(error.value)
  assert time.monotonic() - started < 5


def test_reachable_workers_pass():
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    in_graph.wait_until_reachable([Address("127.0.0.1", listener.getsockname()[1])], 1.0)
