"""Tests of the `mda` (minimum-diameter averaging) rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("mda")


def test_one_dimension_hand_computed():
  # Subsets of 4 out of 0, 3, 4, 5, 9: without 0 the diameter is 6, without 9 it is 5, any other keeps
  # both 0 and 9 (diameter 9). So the output is the mean of 0, 3, 4, 5.
  out, mask = rule().aggregate_and_select(np.array([[0.], [3.], [4.], [5.], [9.]]), f=1)
  np.testing.assert_allclose(out.numpy(), [3.])
  np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 1, 0])


def test_two_excluded_hand_computed():
  # Subsets of 3 out of 0, 1, 2, 4, 10: {0, 1, 2} has diameter 2, every other one at least 3.
  out = rule().aggregate(np.array([[4.], [10.], [0.], [2.], [1.]]), f=2)
  np.testing.assert_allclose(out.numpy(), [1.])


def test_tied_diameters_go_to_the_smaller_spread():
  # X=(0,0), Y=(4,0), Z=(2,0), P=(2,3), Q=(2,-3.2); |PQ| = 6.2, every other distance is at most |XY| = 4.
  # Dropping P or Q leaves diameter 4 (pair X, Y); dropping X, Y or Z keeps P and Q (6.2).
  # Sums of squared distances: without Q 16+13+13+9+4+4 = 59, without P 16+14.24+14.24+10.24+4+4 = 62.72,
  # so Q goes, whatever its position: mean of X, Y, Z, P = (2, 0.75).
  points = np.array([[0., 0.], [4., 0.], [2., 3.], [2., -3.2], [2., 0.]])
  for order in ([0, 1, 2, 3, 4], [3, 2, 1, 0, 4], [4, 3, 0, 2, 1]):
    out, mask = rule().aggregate_and_select(points[order], f=1)
    np.testing.assert_allclose(out.numpy(), [2., 0.75])
    np.testing.assert_array_equal(mask.numpy(), (np.array(order) != 3).astype(float))


def test_no_byzantine_is_the_mean():
  x = np.array([[1., 2.], [3., -2.], [8., 3.]])
  np.testing.assert_allclose(rule().aggregate(x, f=0).numpy(), [4., 1.])


def test_non_finite_rows_are_left_out():
  x = np.array([[0.], [3.], [4.], [5.], [np.nan]])
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [3.])
  x = np.array([[np.inf, 1.], [0., 0.], [1., 1.], [-np.inf, 0.], [2., 2.]])
  np.testing.assert_allclose(rule().aggregate(x, f=2).numpy(), [1., 1.])


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("mda needs n > 2f, got n=4, f=2")):
    rule().check(n=4, f=2)


def test_check_refuses_too_many_subsets_and_says_how_to_allow_them():
  rule().check(n=20, f=5)  # C(20, 5) = 15504
  with pytest.raises(ValueError, match=re.escape("C(30, 6) = 593775 subsets, more than max_subsets=200000; "
                                                 "pass max_subsets=593775 (or more)")):
    rule().check(n=30, f=6)
  rule().check(n=30, f=6, max_subsets=593775)
  with pytest.raises(ValueError, match=re.escape("mda needs 1 <= max_subsets, got max_subsets=0")):
    rule().check(n=5, f=1, max_subsets=0)


def test_upper_bound():
  assert rule().upper_bound(n=5, f=1, d=3) == pytest.approx(4 / math.sqrt(8))
  assert rule().upper_bound(n=5, f=0, d=3) is None


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant([[0.], [3.], [4.], [5.], [9.]], tf.float32)).numpy(), [3.])
