"""Tests of the `phocas` rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf


def rule() -> gars.Rule:
  return gars.get("phocas")


def test_hand_computed():
  # Column 0: trimmed mean (1+2+3)/3 = 2; the 4 closest are 0, 1, 2, 3 -> 1.5.
  # Column 1: trimmed mean (3+4+9)/3 = 16/3; 0 is the farthest, so 3, 4, 9, 9.5 -> 6.375
  # (the averaged median keeps 0 and drops 9.5 instead, see test_averaged_median.py).
  x = np.array([[0., 0.], [1., 3.], [2., 4.], [3., 9.], [10., 9.5]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [1.5, 6.375])


def test_even_n():
  # Trimmed mean (2+3)/2 = 2.5; the 3 closest are 0, 2, 3 -> 5/3.
  x = np.array([[0.], [2.], [3.], [10.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [5. / 3], rtol=1e-6)


def test_non_finite_values_are_never_averaged():
  # Sorted: 1, 2, 3, +inf, +inf; trimmed mean 3; the 3 finite values are the closest -> 2.
  x = np.array([[1.], [inf], [2.], [nan], [3.]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [2.])


def test_random_byzantine_rows_stay_within_the_honest_range():
  rng = np.random.default_rng(3)
  honest = rng.normal(size=(4, 50)).astype(np.float32)
  byzantine = np.stack([np.full(50, -1e30), np.full(50, inf), np.full(50, nan)]).astype(np.float32)
  out = rule().aggregate(np.concatenate([honest, byzantine]), f=3).numpy()
  assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_check_boundary():
  rule().check(n=3, f=1)
  with pytest.raises(ValueError, match=re.escape("phocas needs n >= 2f+1, got n=2, f=1")):
    rule().check(n=2, f=1)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("phocas got unknown argument(s) b; accepted: none")):
    rule().aggregate(np.ones((3, 2), np.float32), f=1, b=1)


def test_float64_and_list_input():
  rows = [tf.constant([v], tf.float64) for v in (0., 2., 3., 10.)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_allclose(out.numpy(), [5. / 3], rtol=1e-12)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[0., 0.], [1., 3.], [2., 4.], [3., 9.], [10., 9.5]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(x).numpy(), [1.5, 6.375])
