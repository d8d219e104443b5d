"""Tests of the `optimal-little` attack (ALIE with a line search of z)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks, gars


class Cliff(gars.Rule):
  """Test rule: outputs the last gradient if all its coordinates are within `cliff`, else zero."""

  name = "cliff"
  params = {"cliff": 2.7}

  def _aggregate(self, gradients, f, cliff):
    last = gradients[-1]
    return tf.where(tf.reduce_all(tf.abs(last) <= cliff), last, tf.zeros_like(last))


def deviation(honest, byzantine, gar, f_decl):
  return float(tf.norm(gars.get(gar).aggregate(tf.concat([honest, byzantine], 0), f_decl) - honest.mean(axis=0)))


def search(honest, f_real, f_decl, **kwargs):
  factor, distance = attacks.get("optimal-little").search(honest, f_real, f_decl, **kwargs)
  return float(factor), float(distance)


def test_requires_a_rule():
  with pytest.raises(ValueError, match=re.escape("attack optimal-little searches its z against the rule under attack: "
                                                 "pass gar=")):
    attacks.get("optimal-little")(np.ones((5, 2)), 1, 1)


def test_zooms_into_the_cliff():
  # Honest (-1, 0) and (1, 0): mean 0, unbiased std (sqrt(2), 0). The rule
  # outputs z * sqrt(2) while that is <= 2.7, i.e. z <= 1.909, else 0.
  # Grid [0, 10] by 1.25 -> 1.25; then [0, 2.5] by 0.3125 -> 1.875; then
  # [1.5625, 2.1875] by 0.078125 -> 1.875 (1.953 is past the cliff).
  honest = np.array([[-1., 0.], [1., 0.]])
  factor, distance = search(honest, 1, 1, gar=Cliff())
  assert factor == pytest.approx(1.875)
  assert distance == pytest.approx(1.875 * np.sqrt(2))
  np.testing.assert_allclose(attacks.get("optimal-little")(honest, 1, 1, gar=Cliff()).numpy(),
                             [[1.875 * np.sqrt(2), 0.]])


@pytest.mark.parametrize("gar, margin", [("median", 1.3), ("krum", 1.5)])
def test_beats_the_paper_z(gar, margin):
  # n = 11, f = 2: the paper's z = Phi^-1(7/11) = 0.35 barely moves the rule.
  honest = np.random.default_rng(1).normal(loc=1., size=(9, 10))
  plain = deviation(honest, attacks.get("little")(honest, 2, 2), gar, 2)
  found = deviation(honest, attacks.get("optimal-little")(honest, 2, 2, gar=gar), gar, 2)
  assert found > margin * plain


def test_never_worse_than_the_paper_z():
  # The paper's z is a candidate: with a range around it, the search keeps at least its deviation.
  honest = np.random.default_rng(5).normal(size=(9, 10))
  plain = deviation(honest, attacks.get("little")(honest, 2, 2), "krum", 2)
  found = deviation(honest, attacks.get("optimal-little")(honest, 2, 2, gar="krum", points=2), "krum", 2)
  assert found >= plain


def test_rule_gets_f_decl():
  # 9 honest + 2 Byzantine = 11 workers: krum accepts f_decl = 4 (11 >= 11) but not 5.
  honest = np.random.default_rng(2).normal(size=(9, 3))
  assert attacks.get("optimal-little")(honest, 2, 4, gar="krum").shape == (2, 3)
  with pytest.raises(ValueError, match="krum needs n >= 2f\\+3, got n=11, f=5"):
    attacks.get("optimal-little")(honest, 2, 5, gar="krum")


def test_runs_in_tf_function_like_eager():
  honest = tf.constant(np.random.default_rng(4).normal(size=(9, 5)), tf.float32)
  eager = attacks.get("optimal-little")(honest, 2, 2, gar="median").numpy()
  traced = tf.function(lambda x: attacks.get("optimal-little")(x, 2, 2, gar="median"))(honest).numpy()
  np.testing.assert_allclose(traced, eager, rtol=1e-6)


def test_bad_range():
  with pytest.raises(ValueError, match=re.escape("attack optimal-little needs factor_min < factor_max, got [3, 1]")):
    attacks.get("optimal-little")(np.ones((5, 2)), 1, 1, gar="median", factor_min=3., factor_max=1.)
