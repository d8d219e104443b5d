"""Tests of the `trimmed-mean` rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf


def rule() -> gars.Rule:
  return gars.get("trimmed-mean")


def test_hand_computed():
  x = np.array([[5., 0.], [1., 1.], [3., 2.], [100., 3.], [-50., 4.]], np.float32)
  # f=1, column 0: drop -50 and 100 -> (1+3+5)/3; column 1: drop 0 and 4 -> (1+2+3)/3.
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [3., 2.])
  # f=2 keeps only the middle value.
  np.testing.assert_allclose(rule().aggregate(x, f=2).numpy(), [3., 2.])
  # f=0 is the plain mean.
  np.testing.assert_allclose(rule().aggregate(x, f=0).numpy(), [59. / 5, 2.])


def test_even_n():
  x = np.array([[1.], [2.], [3.], [10.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [2.5])


def test_non_finite_values_sort_last_and_are_trimmed():
  # Honest 1, 2, 3; NaN and -inf become the two largest: 1 and 2 are trimmed from below, leaving 3.
  x = np.array([[1.], [2.], [3.], [nan], [-inf]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [3.])


def test_random_byzantine_rows_stay_within_the_honest_range():
  rng = np.random.default_rng(1)
  honest = rng.normal(size=(4, 50)).astype(np.float32)
  byzantine = np.stack([np.full(50, nan), np.full(50, inf), np.full(50, -3e38)]).astype(np.float32)
  out = rule().aggregate(np.concatenate([byzantine, honest]), f=3).numpy()
  assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("trimmed-mean needs n >= 2f+1, got n=4, f=2")):
    rule().check(n=4, f=2)
  with pytest.raises(ValueError, match=re.escape("trimmed-mean needs n >= 2f+1, got n=2, f=1")):
    rule().aggregate(np.ones((2, 3), np.float32), f=1)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("trimmed-mean got unknown argument(s) b; accepted: none")):
    rule().check(n=3, f=1, b=1)


def test_float64_and_list_input():
  rows = [tf.constant([v, -v], tf.float64) for v in (1., 2., 9.)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_array_equal(out.numpy(), [2., -2.])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[1., 2.], [3., 6.], [2., nan]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(x).numpy(), [2., 6.])
