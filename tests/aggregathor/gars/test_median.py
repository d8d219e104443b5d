"""Tests of the coordinate-wise `median` rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("median")


def test_odd_n_hand_computed():
  x = np.array([[5., 0.], [1., -7.], [3., 2.], [100., 1.], [-50., 9.]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [3., 1.])


def test_even_n_is_the_mean_of_the_two_middle_values():
  x = np.array([[1., 10.], [2., -4.], [3., 0.], [10., 1.]], np.float32)
  # Column 0: 2 and 3 -> 2.5; column 1: 0 and 1 -> 0.5.
  np.testing.assert_array_equal(rule().aggregate(x, f=1).numpy(), [2.5, 0.5])


def test_non_finite_byzantine_rows_sort_past_the_honest_values():
  # Honest column values 1, 2, 3; NaN and -inf both sort last, so the median is 3.
  x = np.array([[1., 4.], [2., 5.], [3., 6.], [np.nan, -np.inf], [-np.inf, np.nan]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [3., 6.])


def test_random_nan_and_inf_rows_stay_within_the_honest_range():
  rng = np.random.default_rng(0)
  honest = rng.normal(size=(4, 50)).astype(np.float32)
  byzantine = np.stack([np.full(50, np.nan), np.full(50, np.inf), np.full(50, -np.inf)]).astype(np.float32)
  out = rule().aggregate(np.concatenate([honest, byzantine]), f=3).numpy()
  assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("median needs n >= 2f+1, got n=4, f=2")):
    rule().check(n=4, f=2)
  with pytest.raises(ValueError, match=re.escape("median needs n >= 2f+1, got n=4, f=2")):
    rule().aggregate(np.ones((4, 3), np.float32), f=2)


def test_upper_bound():
  assert rule().upper_bound(n=7, f=2, d=10) == pytest.approx(1 / math.sqrt(5))


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("median got unknown argument(s) b; accepted: none")):
    rule().check(n=3, f=1, b=1)


def test_float64_and_list_input():
  rows = [tf.constant([1., 2.], tf.float64), tf.constant([2., 5.], tf.float64), tf.constant([9., -1.], tf.float64)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_array_equal(out.numpy(), [2., 2.])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[1., 2.], [3., 6.], [2., np.nan]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(x).numpy(), [2., 6.])
