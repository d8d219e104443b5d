"""Tests of the `optimal-empire` attack (Fall of Empires with a line search of epsilon)."""

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


def attack(honest, f_real=1, f_decl=1, **kwargs):
  return attacks.get("optimal-empire")(honest, f_real, f_decl, **kwargs)


def search(honest, f_real=1, f_decl=1, **kwargs):
  factor, distance = attacks.get("optimal-empire").search(honest, f_real, f_decl, **kwargs)
  return float(factor), float(distance)


def deviation(honest, byzantine, gar, f_decl):
  return float(tf.norm(gars.get(gar).aggregate(tf.concat([honest, byzantine], 0), f_decl) - honest.mean(axis=0)))


def test_requires_a_rule():
  with pytest.raises(ValueError, match=re.escape("attack optimal-empire searches its epsilon against the rule under "
                                                 "attack: pass gar=")):
    attack(np.ones((5, 2)))
  with pytest.raises(ValueError, match="pass gar="):
    attack(np.ones((5, 2)), f_real=0)


def test_unknown_rule():
  with pytest.raises(ValueError, match="unknown aggregation rule 'medain'"):
    attack(np.ones((5, 2)), gar="medain")


def test_rule_must_accept_n_and_f_decl():
  # n = 3 honest + 2 = 5 < 2 * 2 + 3.
  with pytest.raises(ValueError, match=re.escape("cannot evaluate rule krum with n=5, f_decl=2: krum needs n >= 2f+3")):
    attack(np.ones((3, 2)), 2, 2, gar="krum")


def test_average_is_pushed_to_the_end_of_the_range():
  # Against the mean, the deviation 2(1 + eps)/3 grows with eps: honest mean (2, 0), n = 3.
  honest = np.array([[1., 0.], [3., 0.]])
  assert search(honest, gar="average") == pytest.approx((10., 22 / 3))
  assert search(honest, gar="average", factor_min=1., factor_max=3.) == pytest.approx((3., 8 / 3))
  np.testing.assert_allclose(attack(honest, gar="average").numpy(), [[-20., 0.]])


def test_zooms_into_the_cliff():
  # One honest gradient 1: the rule outputs -eps while eps <= 2.7, then 0. The
  # deviation is 1 + eps up to the cliff. Grid [0, 10] by 1.25 -> 2.5; then
  # [1.25, 3.75] by 0.3125 -> 2.5; then [2.1875, 2.8125] by 0.078125 -> 2.65625.
  honest = np.array([[1.]])
  assert search(honest, gar=Cliff()) == pytest.approx((2.65625, 3.65625))
  np.testing.assert_allclose(attack(honest, gar=Cliff()).numpy(), [[-2.65625]])
  # One round only: the coarse grid.
  assert search(honest, gar=Cliff(), rounds=1) == pytest.approx((2.5, 3.5))


def test_gar_args_reach_the_rule():
  # Cliff at 4.1: 3.75; then [2.5, 5] by 0.3125 -> 4.0625; then [3.75, 4.375] by 0.078125 -> 4.0625.
  assert search(np.array([[1.]]), gar=Cliff(), gar_args={"cliff": 4.1}) == pytest.approx((4.0625, 5.0625))
  with pytest.raises(ValueError, match=re.escape("cliff got unknown argument(s) slope")):
    search(np.array([[1.]]), gar=Cliff(), gar_args={"slope": 1})


def test_beats_the_default_epsilon_against_median():
  honest = np.random.default_rng(1).normal(loc=1., size=(9, 10))
  plain = deviation(honest, attacks.get("empire")(honest, 2, 2), "median", 2)
  found = deviation(honest, attack(honest, 2, 2, gar="median"), "median", 2)
  assert found >= plain
  honest = np.random.default_rng(1).normal(loc=1., size=(9, 10))
  plain = deviation(honest, attacks.get("empire")(honest, 2, 2), "average", 2)
  found = deviation(honest, attack(honest, 2, 2, gar="average"), "average", 2)
  assert found > 3 * plain


def test_search_reports_the_distance_it_reaches():
  honest = np.random.default_rng(3).normal(size=(8, 6))
  factor, distance = search(honest, 3, 3, gar="median")
  byzantine = attacks.get("empire")(honest, 3, 3, factor=factor)
  assert deviation(honest, byzantine, "median", 3) == pytest.approx(distance)


def test_runs_in_tf_function():
  honest = np.array([[1.]], np.float32)
  out = tf.function(lambda x: attack(x, gar=Cliff()))(tf.constant(honest))
  np.testing.assert_allclose(out.numpy(), [[-2.65625]])


@pytest.mark.parametrize("kwargs, message", [
    ({"factor_min": 2., "factor_max": 2.}, re.escape("needs factor_min < factor_max, got [2, 2]")),
    ({"points": 1}, "needs 2 <= points, got points=1"),
    ({"rounds": 0}, "needs 1 <= rounds, got rounds=0"),
    ({"points": 17, "rounds": 4}, re.escape("at most 64; got points=17, rounds=4 (68)")),
    ({"factor_max": float("inf")}, "needs a finite factor_max"),
    ({"gar_args": [1]}, "expects gar_args as a dict"),
])
def test_bad_search_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    attack(np.ones((5, 2)), gar="median", **kwargs)
