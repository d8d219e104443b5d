"""Tests of the `cge` (comparative gradient elimination) rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("cge")


# Norms 5, 1, 2, 10, 0.5.
ROWS = np.array([[3., 4.], [1., 0.], [0., -2.], [10., 0.], [0., .5]])


def test_hand_computed():
  # f = 2 keeps the 3 smallest norms: (0, .5), (1, 0), (0, -2) -> (1/3, -1.5/3).
  out, mask = rule().aggregate_and_select(ROWS, f=2)
  np.testing.assert_allclose(out.numpy(), [1 / 3, -.5])
  np.testing.assert_array_equal(mask.numpy(), [0, 1, 1, 0, 1])


def test_no_byzantine_is_the_mean():
  np.testing.assert_allclose(rule().aggregate(ROWS, f=0).numpy(), [2.8, .5])


def test_non_finite_and_overflowing_rows_are_dropped_first():
  x = np.array([[np.nan, 0.], [1., 1.], [2., 2.], [-np.inf, 0.], [3., 3.]])
  np.testing.assert_allclose(rule().aggregate(x, f=2).numpy(), [2., 2.])
  # 1e30 squared overflows float32: the norm counts as +inf, still the largest.
  x = np.array([[1e30, 0.], [1., 1.], [2., 2.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [1.5, 1.5])


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("cge needs n > 2f, got n=4, f=2")):
    rule().check(n=4, f=2)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: rule().aggregate(g, f=2), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant(ROWS, tf.float32)).numpy(), [1 / 3, -.5], rtol=1e-6)
