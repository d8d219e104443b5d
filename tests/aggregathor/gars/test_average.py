"""Tests of the `average` rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("average")


def test_hand_computed_mean():
  x = np.array([[1., -2., 0.], [3., 4., 0.5], [8., 1., -0.5]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=0).numpy(), [4., 1., 0.], rtol=1e-6)


def test_is_not_robust_and_says_so():
  assert rule().robust is False
  # One large value moves the mean arbitrarily: (0 + 0 + 3e6) / 3.
  x = np.array([[0.], [0.], [3e6]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [1e6])


def test_propagates_non_finite_values():
  x = np.array([[1., 2., 3.], [np.nan, np.inf, -np.inf], [1., 2., 3.]], np.float32)
  out = rule().aggregate(x, f=1).numpy()
  assert np.isnan(out[0]) and out[1] == np.inf and out[2] == -np.inf


def test_accepts_any_n_and_f():
  rule().check(n=1, f=0)
  rule().check(n=3, f=3)


def test_check_refuses_f_above_n_and_negative_f():
  with pytest.raises(ValueError, match=re.escape("expected f <= n, got n=2, f=3")):
    rule().check(n=2, f=3)
  with pytest.raises(ValueError, match=re.escape("expected f >= 0 Byzantine workers, got f=-1")):
    rule().aggregate(np.ones((2, 2), np.float32), f=-1)


def test_upper_bound_only_without_byzantine_workers():
  assert rule().upper_bound(n=4, f=0, d=10) == pytest.approx(1 / math.sqrt(4))
  assert rule().upper_bound(n=4, f=1, d=10) is None


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("average got unknown argument(s) m; accepted: none")):
    rule().aggregate(np.ones((2, 2), np.float32), f=0, m=1)


def test_bad_shapes_and_dtypes():
  with pytest.raises(ValueError, match=r"expected gradients of shape \(n, d\)"):
    rule().aggregate(np.ones(3, np.float32), f=0)
  with pytest.raises(ValueError, match="expected gradients of dtype float32 or float64, got int64"):
    rule().aggregate(np.ones((2, 2), np.int64), f=0)
  with pytest.raises(ValueError, match="expected a non-empty list of gradients"):
    rule().aggregate([], f=0)


def test_float64_and_list_input():
  rows = [tf.constant([1., 2.], tf.float64), tf.constant([2., 5.], tf.float64)]
  out = rule().aggregate(rows, f=0)
  assert out.dtype == tf.float64
  np.testing.assert_array_equal(out.numpy(), [1.5, 3.5])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[1., 2.], [3., 6.]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=0), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(x).numpy(), [2., 4.])
