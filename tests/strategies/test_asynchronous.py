"""strategies.asynchronous: AdaComp's asynchronous server on hand-made arrivals, and runs through runner.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import runner
from aggregathor import compression
from strategies.asynchronous import AsynchronousServer

QUIET = ["--evaluation-period", "-1", "--summary-period", "-1", "--checkpoint-period", "-1", "--log-period", "-1"]


def test_a_stale_gradient_is_divided_by_the_updates_since_its_fetch():
  server = AsynchronousServer(3, 4, compression.get("topk", 4, ratio=0.5, error_feedback=False))
  server.start(tf.zeros([4]))
  worker = lambda i: tf.constant(i, tf.int32)  # pylint: disable=unnecessary-lambda-assignment
  # Worker 0 sends coordinates 0 and 1, then fetches; worker 1, fetched at 0, sends 0 and 2 (delay 1).
  np.testing.assert_allclose(server.receive(worker(0), tf.constant([3.0, 2, 0, 0])).numpy(), [3, 2, 0, 0])
  server.fetch(worker(0), tf.zeros([4]))
  np.testing.assert_allclose(server.receive(worker(1), tf.constant([2.0, 0, 4, 1])).numpy(), [2, 0, 4, 0])
  server.fetch(worker(1), tf.zeros([4]))
  # Worker 2, fetched at 0, comes after both (delay 2): coordinate 0 was touched twice, 1 and 2 once.
  np.testing.assert_allclose(server.receive(worker(2), tf.constant([6.0, 0, 5, 0])).numpy(), [3, 0, 5, 0])
  assert int(server.last_delay.numpy()) == 2
  # Worker 0 fetched after update 0: it has missed updates 1 and 2, which touched 0 twice and 2 twice.
  np.testing.assert_allclose(server.receive(worker(0), tf.constant([0.0, 0, 8, 1])).numpy(), [0, 0, 4, 1])
  assert int(server.iteration.numpy()) == 4


def test_simulated_workers_arrive_out_of_order_on_stale_weights():
  server = AsynchronousServer(4, 2, delay_spread=3.0, seed=1)
  server.start(tf.zeros([2]))
  order, delays = [], []
  for _ in range(40):
    worker = server.next_worker()
    order.append(int(worker.numpy()))
    server.receive(worker, tf.ones([2]))
    delays.append(int(server.last_delay.numpy()))
    server.fetch(worker, tf.zeros([2]))
  counts = np.bincount(order, minlength=4)
  assert counts[0] > counts[3] > 0  # the fastest worker arrives most often, the slowest still does
  assert max(delays) >= 3 and order != sorted(order)


def _evaluations(path):
  return [line.split("\t", 1)[1] for line in path.read_text().splitlines()]


def test_an_asynchronous_run_resumed_from_its_checkpoint_is_the_uninterrupted_one(capsys, tmp_path):
  common = ["--experiment", "digits", *QUIET, "--nb-workers", "4", "--asynchronous", "--delay-spread", "2",
            "--compression", "adacomp", "--compression-args", "compression_rate:0.1", "--evaluation-delta", "20"]
  assert runner.run([*common, "--max-steps", "40", "--checkpoint-dir", str(tmp_path / "straight"),
                     "--evaluation-file", str(tmp_path / "straight.tsv")]) == 0
  for _ in range(2):
    assert runner.run([*common, "--max-steps", "20", "--checkpoint-dir", str(tmp_path / "resumed"),
                       "--checkpoint-delta", "20", "--evaluation-file", str(tmp_path / "resumed.tsv")]) == 0
  assert "Sent " in capsys.readouterr().out
  straight, resumed = _evaluations(tmp_path / "straight.tsv"), _evaluations(tmp_path / "resumed.tsv")
  assert len(straight) == 2 and straight == resumed
  assert float(straight[-1].split("accuracy:")[1].split("\t")[0]) > 0.5


@pytest.mark.parametrize("flag", [["--aggregator", "krum"], ["--nb-real-byz-workers", "1", "--attack", "little"],
                                  ["--study-period", "5"]])
def test_asynchronous_mode_refuses_what_needs_a_rule_across_workers(capsys, flag):
  assert runner.run(["--experiment", "digits", "--nb-workers", "4", "--asynchronous", *flag]) == 2
  assert "applies each worker's gradient alone" in capsys.readouterr().err
