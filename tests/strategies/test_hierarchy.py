"""strategies.hierarchy: HiPS's two levels (parties, then the global PS) as one rule, and runner.py --parties."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import compression, gars
from strategies import hierarchy

import runner


def test_parties_are_contiguous_and_differ_by_at_most_one():
  assert hierarchy.party_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
  assert hierarchy.party_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
  with pytest.raises(ValueError, match="1 <= parties <= n workers"):
    hierarchy.party_bounds(3, 4)


def test_one_party_of_averages_is_the_average():
  rows = tf.random.stateless_normal([5, 40], seed=[3, 4])
  rule = hierarchy.HierarchicalRule("average", parties=1)
  np.testing.assert_allclose(rule.aggregate(rows, 0).numpy(), tf.reduce_mean(rows, 0).numpy(), rtol=1e-6)


def test_the_local_rule_runs_in_each_party_and_the_global_rule_across_them():
  # Parties of 3, 2, 2 workers: medians within, the average of the three medians across.
  rows = tf.constant([[1.0], [2.0], [9.0], [4.0], [6.0], [10.0], [20.0]])
  rule = hierarchy.HierarchicalRule("median", parties=3, global_rule="average")
  assert rule.aggregate(rows, 0).numpy() == pytest.approx([(2.0 + 5.0 + 15.0) / 3])


def test_a_robust_global_rule_filters_out_a_byzantine_party():
  honest = tf.random.stateless_normal([6, 50], seed=[5, 6]) * 0.1 + 1.0
  byzantine = tf.fill([3, 50], -100.0)  # the whole third party
  rows = tf.concat([honest, byzantine], 0)
  robust = hierarchy.HierarchicalRule("average", parties=3, global_rule="median", global_f=1).aggregate(rows, 0)
  plain = hierarchy.HierarchicalRule("average", parties=3).aggregate(rows, 0)
  assert float(tf.reduce_min(robust)) > 0.5  # the two honest parties' means, about 1
  assert float(tf.reduce_max(plain)) < -30  # a third of -100 dominates the mean


def test_each_party_push_is_two_bit_compressed_with_its_residual_carried_across_steps():
  threshold = 0.5
  rule = hierarchy.HierarchicalRule("average", parties=2)
  rule.compress_pushes_with(compression.get("2bit", 4, threshold=threshold))
  first = tf.constant([[0.3, 0.6, -0.7, 0.0], [0.3, 0.6, -0.7, 0.0], [0.1, 0.0, 0.0, 0.2], [0.1, 0.0, 0.0, 0.2]])
  # Party means: [0.3, 0.6, -0.7, 0] and [0.1, 0, 0, 0.2]; only |r| >= 0.5 is sent, the rest is kept.
  np.testing.assert_allclose(rule.aggregate(first, 0).numpy(), [0.0, 0.25, -0.25, 0.0])
  # The residuals, [0.3, 0.1, -0.2, 0] and [0.1, 0, 0, 0.2], plus the same means: 0.6, 0.7 and -0.9 cross in party 0.
  np.testing.assert_allclose(rule.aggregate(first, 0).numpy(), [0.25, 0.25, -0.25, 0.0])
  assert sorted(rule.variables()) == ["party_compression_residual"]
  np.testing.assert_allclose(rule.variables()["party_compression_residual"].numpy(),
                             [[0.1, 0.2, -0.4, 0.0], [0.2, 0.0, 0.0, 0.4]], atol=1e-6)


def test_a_party_too_small_for_its_rule_says_so():
  with pytest.raises(ValueError, match=re.escape("a party of 3 workers (of 7 in 3 parties): krum needs n >= 2f+3")):
    hierarchy.HierarchicalRule("krum", parties=3).check(7, 1)
  with pytest.raises(ValueError):
    hierarchy.HierarchicalRule("average", parties=3, global_rule="median", global_f=2)


def _final_evaluation(tmp_path, name: str, *args: str) -> tuple[float, float]:
  """(accuracy, loss) of a 30-step local run's final evaluation."""
  path = tmp_path / f"{name}.tsv"
  status = runner.run(["--experiment", "digits", "--max-steps", "30", "--evaluation-delta", "-1",
                       "--evaluation-period", "-1", "--checkpoint-dir", "-", "--log-period", "-1",
                       "--evaluation-file", str(path), *args])
  assert status == 0
  fields = path.read_text().splitlines()[-1].split("\t")
  assert fields[1] == "30"
  return float(fields[2].split(":")[1]), float(fields[3].split(":")[1])


def test_runner_with_one_party_and_one_local_step_equals_plain_sgd(tmp_path):
  plain = _final_evaluation(tmp_path, "plain", "--nb-workers", "4")
  one_party = _final_evaluation(tmp_path, "one-party", "--nb-workers", "4", "--parties", "1")
  assert one_party == plain


def test_runner_hips_a_robust_global_rule_keeps_learning_beside_a_byzantine_party(tmp_path):
  # Three parties of 3, the last one all Byzantine (fall of empires, -10 times the honest mean); 2-bit pushes.
  common = ["--nb-workers", "9", "--parties", "3", "--nb-real-byz-workers", "3", "--attack", "empire",
            "--attack-args", "factor:10", "--party-compression", "2bit", "--party-compression-args", "threshold:0.01",
            "--learning-rate-args", "initial-rate:0.1"]
  robust, _ = _final_evaluation(tmp_path, "robust", *common, "--global-aggregator", "median",
                                "--nb-decl-byz-parties", "1")
  plain, _ = _final_evaluation(tmp_path, "plain", *common)
  assert robust > 0.5 and plain < 0.3, (robust, plain)


def test_parties_with_a_redundancy_placement_say_to_drop_one():
  with pytest.raises(ValueError, match="--parties and --redundancy .* drop one of them"):
    runner.build_training(runner.build_parser().parse_args(
        ["--experiment", "digits", "--checkpoint-dir", "-", "--no-wait", "--nb-workers", "6", "--parties", "2",
         "--redundancy", "detox"]))
