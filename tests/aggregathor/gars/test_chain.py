"""Tests of chains of pre-aggregations and a rule: `gars.get("a>b>rule")` and `gars.chain(...)`."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

# Krum scores with f = 1 (see test_krum.py): 0 -> 7.25, 1 -> 3.25, 2.5 -> 2.5, 3 -> 4.25, 10 -> 105.25.
LINE = np.array([[0.], [1.], [2.5], [3.], [10.]])


class Shift(gars.PreAggregation):
  """A test-only pre-aggregation (not registered) whose argument clashes with multi-krum's `m`."""

  name = "shift"
  reference = "test only"
  params = {"m": 0.}

  def _transform(self, gradients: tf.Tensor, f: int, m: float) -> tf.Tensor:
    return gradients + m


def test_names_and_python_api_build_the_same_chain():
  by_name = gars.get("nnm > krum")
  by_call = gars.chain("nnm", "krum")
  assert isinstance(by_name, gars.Chain) and isinstance(by_call, gars.Chain)
  assert by_name.name == by_call.name == "nnm>krum"
  assert [stage.name for stage in by_name.stages] == ["nnm", "krum"]
  # nnm (4 nearest): 0, 1, 2.5 and 3 all mix to 6.5/4 = 1.625, and 10 to (10+3+2.5+1)/4 = 4.125;
  # krum then picks one of the 1.625.
  for rule in (by_name, by_call):
    np.testing.assert_allclose(rule.aggregate(LINE, f=1).numpy(), [1.625])


def test_chain_of_one_is_the_rule():
  assert gars.chain("krum").name == "krum"


def test_arguments_are_routed_to_their_stage():
  # s=1 makes bucketing a mere permutation, which multi-krum (m=2: rows 2.5 and 1) ignores.
  rule = gars.get("bucketing>multi-krum")
  assert rule.params == {"bucketing.s": 2, "bucketing.seed": None, "multi-krum.m": None}
  np.testing.assert_allclose(rule.aggregate(LINE, f=1, s=1, seed=0, m=2).numpy(), [1.75])
  np.testing.assert_allclose(rule.aggregate(LINE, f=1, **{"bucketing.s": 1, "multi-krum.m": 2}).numpy(), [1.75])
  np.testing.assert_allclose(gars.get("clipping>average").aggregate(
      [[3., 4.], [.3, .4]], f=0, **{"clipping.threshold": 1.}).numpy(), [.45, .6])


def test_ambiguous_argument_must_name_its_stage():
  rule = gars.chain(Shift(), "multi-krum")
  with pytest.raises(ValueError, match=re.escape("shift>multi-krum: argument 'm' is ambiguous between shift, "
                                                 "multi-krum; write it as shift.m")):
    rule.aggregate(LINE, f=1, m=2)
  # Shifted by 1, then the mean of the two lowest scores: (3.5 + 2) / 2.
  out = rule.aggregate(LINE, f=1, **{"shift.m": 1., "multi-krum.m": 2})
  np.testing.assert_allclose(out.numpy(), [2.75])


def test_unknown_arguments_and_stages():
  with pytest.raises(ValueError, match=re.escape("nnm>krum got unknown argument 'm'; accepted: none")):
    gars.get("nnm>krum").aggregate(LINE, f=1, m=2)
  with pytest.raises(ValueError, match=re.escape("nnm>multi-krum has no stage 'krum' for argument 'krum.m'")):
    gars.get("nnm>multi-krum").check(n=5, f=1, **{"krum.m": 2})
  with pytest.raises(ValueError, match=re.escape("multi-krum got unknown argument(s) k; accepted: m")):
    gars.get("nnm>multi-krum").check(n=5, f=1, **{"multi-krum.k": 2})


def test_a_rule_cannot_come_before_a_pre_aggregation():
  with pytest.raises(ValueError, match=re.escape("'nnm' is a pre-aggregation: it goes before '>' and a rule ends")):
    gars.get("krum>nnm")
  with pytest.raises(ValueError, match=re.escape("only pre-aggregations (arc, bucketing, clipping, nnm) can come "
                                                 "before '>' in a chain, got the rule 'krum'")):
    gars.get("krum>median")
  with pytest.raises(ValueError, match="clipping appears more than once in clipping>clipping>median"):
    gars.get("clipping>clipping>median")
  with pytest.raises(ValueError, match=re.escape("only pre-aggregations (arc, bucketing, clipping, nnm")):
    gars.chain(gars.get("krum"), gars.get("median"))
  with pytest.raises(ValueError, match=re.escape("'nnm' is a pre-aggregation")):
    gars.get("nnm")  # a pre-aggregation alone is no rule
  with pytest.raises(ValueError, match=re.escape("'nnm' is a pre-aggregation")):
    gars.chain("median", "nnm")


def test_check_propagates_the_row_count_through_bucketing():
  rule = gars.get("bucketing>krum")
  rule.check(n=10, f=1)  # 5 buckets of 2
  rule.check(n=9, f=1)  # 4 pairs and a leftover
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=4, f=1")):
    rule.check(n=8, f=1)
  rule.check(n=15, f=1, s=3)
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=4, f=1")):
    rule.check(n=12, f=1, s=3)
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=4, f=1")):
    rule.aggregate(np.ones((8, 2)), f=1)
  # Through two stages: 10 -> 5 rows for nnm (needs n > 2f) and then krum.
  gars.get("bucketing>nnm>krum").check(n=10, f=1)
  with pytest.raises(ValueError, match=re.escape("nnm needs n > 2f, got n=4, f=2")):
    gars.get("bucketing>nnm>krum").check(n=8, f=2)


def test_selection_is_reported_only_when_rows_stand_for_workers():
  x = np.array([[3., 4.], [.3, .4], [.3, .5], [.2, .4], [5., 5.]])
  rule = gars.get("clipping>krum")
  assert rule.selects
  _, mask = rule.aggregate_and_select(x, f=1, threshold=1.)
  assert mask.shape == (5,) and mask.numpy().sum() == 1
  rule = gars.get("nnm>krum")
  assert not rule.selects
  assert rule.aggregate_and_select(x, f=1)[1] is None


def test_upper_bound_is_the_last_stages():
  assert gars.get("nnm>krum").upper_bound(7, 1, 3) == pytest.approx(1 / math.sqrt(18))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  rule = gars.get("bucketing>nnm>krum")
  compiled = tf.function(lambda g: rule.aggregate(g, f=1, seed=1), jit_compile=jit_compile)
  x = tf.constant(np.random.default_rng(0).normal(size=(10, 4)), tf.float32)
  out = compiled(x).numpy()
  assert out.shape == (4,) and np.all(np.isfinite(out))
  np.testing.assert_allclose(out, rule.aggregate(x, f=1, seed=1).numpy(), rtol=1e-5)
