"""strategies.global_updates: HiPS's asynchronous global PS (ASGD, DC-ASGD, staleness), and runner.py's mode."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import experiments
import runner
from aggregathor import compression
from strategies import training
from strategies.global_updates import GlobalServer

QUIET = ["--experiment", "digits", "--evaluation-period", "-1", "--summary-period", "-1", "--checkpoint-period",
         "-1", "--log-period", "-1"]


def party(i: int) -> tf.Tensor:
  return tf.constant(i, tf.int32)


def test_asgd_applies_each_push_as_it_is_and_counts_its_staleness():
  server = GlobalServer(3, 2)
  server.start(tf.zeros([2]))
  np.testing.assert_allclose(server.receive(party(1), tf.constant([1.0, -2.0]), tf.zeros([2])).numpy(), [1, -2])
  server.fetch(party(1), tf.ones([2]))
  assert int(server.last_delay.numpy()) == 0
  server.receive(party(1), tf.ones([2]), tf.ones([2]))  # fetched after update 1: none missed
  assert int(server.last_delay.numpy()) == 0
  server.receive(party(0), tf.ones([2]), tf.ones([2]))  # fetched at the start: missed both
  assert int(server.last_delay.numpy()) == 2
  assert int(server.staleness_max.numpy()) == 2 and server.mean_staleness() == pytest.approx(2 / 3)
  assert int(server.iteration.numpy()) == 3


def test_dc_asgd_compensates_with_the_weights_before_the_previous_update():
  lam, decay = 0.5, 0.1
  server = GlobalServer(2, 3, update="dc-asgd", dc_lambda=lam, weight_decay=decay)
  w0 = np.array([1.0, 2.0, -1.0], np.float32)
  server.start(tf.constant(w0))
  g1 = np.array([0.5, -1.0, 2.0], np.float32)
  # First update: w_prev is the initial weights, so the compensation term is 0.
  first = server.receive(party(0), tf.constant(g1), tf.constant(w0)).numpy()
  np.testing.assert_allclose(first, g1 + decay * w0, rtol=1e-6)
  w1 = w0 - 0.1 * first  # the caller's SGD step at rate 0.1: w <- w + mom
  g2 = np.array([1.0, 3.0, -0.5], np.float32)
  second = server.receive(party(1), tf.constant(g2), tf.constant(w1)).numpy()
  np.testing.assert_allclose(second, g2 + decay * w1 + lam * g2 * g2 * (w1 - w0), rtol=1e-6)
  np.testing.assert_allclose(server.previous.numpy(), w1)


def test_each_party_push_is_two_bit_compressed_with_its_own_residual():
  server = GlobalServer(2, 3, compressor=compression.get("2bit", 3, threshold=0.5))
  server.start(tf.zeros([3]))
  weights = tf.zeros([3])
  # MXNet's 2-bit: r += g; r >= t sends +t (r -= t); r <= -t sends -t (r += t); else 0.
  np.testing.assert_allclose(server.receive(party(0), tf.constant([0.3, -0.7, 1.2]), weights).numpy(), [0, -0.5, 0.5])
  np.testing.assert_allclose(server.receive(party(1), tf.constant([0.3, 0.1, 0.0]), weights).numpy(), [0, 0, 0])
  # Party 0's residual (0.3, -0.2, 0.7) carries over; party 1's (0.3, 0.1, 0) is its own.
  np.testing.assert_allclose(server.receive(party(0), tf.constant([0.3, -0.3, 0.0]), weights).numpy(), [0.5, -0.5, 0.5])
  np.testing.assert_allclose(server.receive(party(1), tf.constant([0.1, 0.0, 0.0]), weights).numpy(), [0, 0, 0])


def test_parties_with_artificial_delays_arrive_out_of_order_on_stale_weights():
  server = GlobalServer(3, 2, delay_spread=4.0, seed=2)
  server.start(tf.zeros([2]))
  order = []
  for _ in range(60):
    sender = server.next_sender()
    order.append(int(sender.numpy()))
    server.receive(sender, tf.ones([2]), tf.zeros([2]))
    server.fetch(sender, tf.zeros([2]))
  counts = np.bincount(order, minlength=3)
  assert counts[0] > counts[2] > 0, counts  # party 0's mean time is 1, party 2's is 5
  assert int(server.staleness_max.numpy()) >= 3 and server.mean_staleness() > 0.5


def test_unknown_updates_and_stray_dc_arguments_are_refused():
  with pytest.raises(ValueError, match="expected one of asgd, dc-asgd"):
    GlobalServer(2, 2, update="sgd")
  with pytest.raises(ValueError, match="DC-ASGD's"):
    GlobalServer(2, 2, dc_lambda=0.1)


def test_local_epochs_are_passes_over_a_workers_share():
  digits = experiments.get("digits")
  share = len(digits.load().y_train) / 6
  assert training.local_steps_for_epochs(digits, 6, 1.0) == round(share / digits.args["batch-size"])
  assert training.local_steps_for_epochs(digits, 6, 1e-3) == 1
  with pytest.raises(ValueError, match="give one of them"):
    training.local_steps_for_epochs(digits, 6, 1.0, local_steps=3)


def _evaluations(path) -> list[list[float]]:
  return [[float(field.split(":")[1]) for field in line.split("\t")[2:]] for line in path.read_text().splitlines()]


def test_one_asynchronous_party_with_one_local_step_is_plain_sgd(tmp_path):
  # One party: every push is on the current weights (staleness 0), the average of the n workers' gradients.
  common = [*QUIET, "--nb-workers", "4", "--max-steps", "20", "--evaluation-delta", "10"]
  assert runner.run([*common, "--evaluation-file", str(tmp_path / "plain.tsv")]) == 0
  assert runner.run([*common, "--parties", "1", "--asynchronous", "--evaluation-file",
                     str(tmp_path / "async.tsv")]) == 0
  np.testing.assert_allclose(_evaluations(tmp_path / "async.tsv"), _evaluations(tmp_path / "plain.tsv"), rtol=1e-4)


def test_an_asynchronous_hips_run_resumed_from_its_checkpoint_is_the_uninterrupted_one(capsys, tmp_path):
  common = [*QUIET, "--nb-workers", "6", "--parties", "3", "--asynchronous", "--delay-spread", "3",
            "--global-update", "dc-asgd", "--local-steps", "2", "--party-compression", "2bit",
            "--party-compression-args", "threshold:0.01", "--evaluation-delta", "10"]
  assert runner.run([*common, "--max-steps", "20", "--evaluation-file", str(tmp_path / "straight.tsv")]) == 0
  out = capsys.readouterr().out
  assert "Staleness of the parties' pushes (dc-asgd): mean" in out and "over 20 pushes" in out
  for _ in range(2):
    assert runner.run([*common, "--max-steps", "10", "--checkpoint-dir", str(tmp_path / "resumed"),
                       "--checkpoint-delta", "10", "--evaluation-file", str(tmp_path / "resumed.tsv")]) == 0
  assert "over 20 pushes" in capsys.readouterr().out
  np.testing.assert_allclose(_evaluations(tmp_path / "resumed.tsv"), _evaluations(tmp_path / "straight.tsv"),
                             rtol=1e-5)


def test_a_robust_local_rule_holds_against_a_byzantine_worker_in_an_asynchronous_party(tmp_path):
  common = [*QUIET, "--nb-workers", "6", "--parties", "2", "--asynchronous", "--nb-real-byz-workers", "1",
            "--attack", "empire", "--attack-args", "factor:20", "--max-steps", "40", "--evaluation-delta", "-1"]
  accuracies = {}
  for rule in ("median", "average"):
    path = tmp_path / f"{rule}.tsv"
    assert runner.run([*common, "--aggregator", rule, "--nb-decl-byz-workers", "1", "--evaluation-file",
                       str(path)]) == 0
    accuracies[rule] = _evaluations(path)[-1][0]
  assert accuracies["median"] > 0.5 and accuracies["average"] < accuracies["median"] - 0.2, accuracies


@pytest.mark.parametrize("args, message", [
    (["--global-aggregator", "median", "--nb-decl-byz-parties", "1"], "no rule across the parties"),
    (["--nb-real-byz-workers", "2", "--attack", "empire"], "would have no honest worker"),
])
def test_asynchronous_hips_refuses_what_it_cannot_do(args, message):
  with pytest.raises(ValueError, match=message):
    runner.build_training(runner.build_parser().parse_args([*QUIET, "--nb-workers", "4", "--parties", "2",
                                                            "--asynchronous", *args]))


def test_dc_asgd_flags_without_the_asynchronous_mode_say_what_to_add():
  with pytest.raises(runner.UsageError, match="give --parties P and --asynchronous too"):
    runner.check_flags(runner.build_parser().parse_args([*QUIET, "--global-update", "dc-asgd"]))
