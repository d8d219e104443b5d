"""Tests of the `average-nan` rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf


def rule() -> gars.Rule:
  return gars.get("average-nan")


def test_mean_of_the_finite_values_per_coordinate():
  x = np.array([[1., nan, 4.], [3., 2., -inf], [5., nan, inf]], np.float32)
  # Column 0: (1+3+5)/3; column 1: only 2; column 2: only 4.
  np.testing.assert_array_equal(rule().aggregate(x, f=2).numpy(), [3., 2., 4.])


def test_a_coordinate_with_no_finite_value_is_nan():
  x = np.array([[1., nan], [3., inf], [5., -inf]], np.float32)
  out = rule().aggregate(x, f=2).numpy()
  assert out[0] == 3. and np.isnan(out[1])


def test_non_finite_byzantine_rows_leave_the_honest_mean():
  honest = np.array([[1., -2.], [2., 0.], [6., 5.]], np.float32)
  byzantine = np.array([[nan, nan], [inf, -inf]], np.float32)
  np.testing.assert_allclose(rule().aggregate(np.concatenate([honest, byzantine]), f=2).numpy(), [3., 1.])


def test_only_filters_non_finite_values():
  assert rule().robust is False
  x = np.array([[0.], [0.], [3e6]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [1e6])


def test_accepts_any_n_and_f():
  rule().check(n=1, f=1)
  rule().check(n=4, f=3)
  with pytest.raises(ValueError, match=re.escape("expected f <= n, got n=2, f=3")):
    rule().check(n=2, f=3)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("average-nan got unknown argument(s) tau; accepted: none")):
    rule().aggregate(np.ones((2, 2), np.float32), f=0, tau=1.)


def test_float64_and_list_input():
  rows = [tf.constant([1., nan], tf.float64), tf.constant([2., 5.], tf.float64)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_array_equal(out.numpy(), [1.5, 5.])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[1., nan], [3., 6.], [inf, nan]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(x).numpy(), [2., 6.])
