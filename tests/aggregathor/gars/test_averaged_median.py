"""Tests of the `averaged-median` rule (MeaMed)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf


def rule() -> gars.Rule:
  return gars.get("averaged-median")


def test_hand_computed():
  # Column 0: median 2, the 4 closest are 0, 1, 2, 3 -> 1.5.
  # Column 1: median 4, the 4 closest are 0, 3, 4, 9 (9.5 is the farthest) -> 4.
  # Phocas picks 3, 4, 9, 9.5 in column 1 (see test_phocas.py): the two rules differ.
  x = np.array([[0., 0.], [1., 3.], [2., 4.], [3., 9.], [10., 9.5]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [1.5, 4.])


def test_even_n_uses_the_mean_of_the_middle_values():
  # Median (2+3)/2 = 2.5; the 3 closest are 0, 2, 3 (10 is farthest) -> 5/3.
  x = np.array([[0.], [2.], [3.], [10.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [5. / 3], rtol=1e-6)


def test_f_zero_is_the_mean():
  x = np.array([[0.], [2.], [3.], [10.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=0).numpy(), [3.75])


def test_non_finite_values_are_never_averaged():
  # Sorted: 1, 2, 3, +inf, +inf; median 3; the 3 finite values are the closest -> 2.
  x = np.array([[1.], [nan], [2.], [-inf], [3.]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [2.])


def test_random_byzantine_rows_stay_within_the_honest_range():
  rng = np.random.default_rng(2)
  honest = rng.normal(size=(4, 50)).astype(np.float32)
  byzantine = np.stack([np.full(50, nan), np.full(50, -inf), np.full(50, 1e30)]).astype(np.float32)
  out = rule().aggregate(np.concatenate([byzantine, honest]), f=3).numpy()
  assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_check_boundary():
  rule().check(n=7, f=3)
  with pytest.raises(ValueError, match=re.escape("averaged-median needs n >= 2f+1, got n=6, f=3")):
    rule().check(n=6, f=3)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("averaged-median got unknown argument(s) k; accepted: none")):
    rule().aggregate(np.ones((3, 2), np.float32), f=1, k=2)


def test_float64_and_list_input():
  rows = [tf.constant([v], tf.float64) for v in (0., 2., 3., 10.)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_allclose(out.numpy(), [5. / 3], rtol=1e-12)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[0., 0.], [1., 3.], [2., 4.], [3., 9.], [10., 9.5]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(x).numpy(), [1.5, 4.])
