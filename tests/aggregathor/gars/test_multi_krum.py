"""Tests of the `multi-krum` rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("multi-krum")


# Krum scores with f = 1 (see test_krum.py): 0 -> 7.25, 1 -> 3.25, 2.5 -> 2.5, 3 -> 4.25, 10 -> 105.25.
LINE = np.array([[0.], [1.], [2.5], [3.], [10.]])


def test_default_m_is_n_minus_f():
  # The 4 lowest scores: 2.5, 1, 3, 0 -> mean 6.5 / 4.
  out, mask = rule().aggregate_and_select(LINE, f=1)
  np.testing.assert_allclose(out.numpy(), [1.625])
  np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 1, 0])


def test_m_two_hand_computed():
  out, mask = rule().aggregate_and_select(LINE, f=1, m=2)
  np.testing.assert_allclose(out.numpy(), [1.75])  # (2.5 + 1) / 2
  np.testing.assert_array_equal(mask.numpy(), [0, 1, 1, 0, 0])


def test_m_one_is_krum():
  x = np.random.default_rng(0).normal(size=(7, 4))
  np.testing.assert_array_equal(rule().aggregate(x, f=2, m=1).numpy(), gars.get("krum").aggregate(x, f=2).numpy())


def test_nan_row_is_dropped():
  x = LINE.copy()
  x[4, 0] = np.nan
  out, mask = rule().aggregate_and_select(x, f=1)
  np.testing.assert_allclose(out.numpy(), [1.625])
  np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 1, 0])


def test_check_boundary_and_m():
  rule().check(n=5, f=1)
  rule().check(n=5, f=1, m=5)
  with pytest.raises(ValueError, match=re.escape("multi-krum needs n >= 2f+3, got n=4, f=1")):
    rule().check(n=4, f=1)
  with pytest.raises(ValueError, match=re.escape("multi-krum needs 1 <= m <= 5, got m=6")):
    rule().check(n=5, f=1, m=6)
  with pytest.raises(ValueError, match=re.escape("multi-krum needs 1 <= m <= 5, got m=0")):
    rule().aggregate(LINE, f=1, m=0)
  with pytest.raises(ValueError, match=re.escape("multi-krum expects m as an int, got 2.0")):
    rule().check(n=5, f=1, m=2.0)


def test_upper_bound_is_krums():
  assert rule().upper_bound(n=7, f=1, d=3) == pytest.approx(1 / math.sqrt(18))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: rule().aggregate(g, f=1, m=2), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant(LINE, tf.float32)).numpy(), [1.75])
