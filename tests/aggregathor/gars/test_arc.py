"""Tests of the `arc` (adaptive robust clipping) pre-aggregation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor.gars.arc import ARC, clipped_count

# Norms 5, 2, 1, 0.5, 10.
ROWS = np.array([[3., 4.], [0., 2.], [1., 0.], [0., .5], [6., 8.]])


def test_clipped_count():
  # floor(2 f (n-f) / n): 1.6, 2.4, 1.5, 4.2, 3.43, 0.
  assert [clipped_count(n, f) for n, f in [(5, 1), (5, 2), (4, 1), (10, 3), (7, 3), (9, 0)]] == [1, 2, 1, 4, 3, 0]


def test_one_clipped_hand_computed():
  # n=5, f=1 -> k=1: the largest (norm 10) is clipped to the 2nd largest norm, 5.
  out = ARC().transform(ROWS, f=1).numpy()
  expected = ROWS.copy()
  expected[4] = [3., 4.]
  np.testing.assert_allclose(out, expected)


def test_two_clipped_hand_computed():
  # n=5, f=2 -> k=2: norms 10 and 5 are clipped to the 3rd largest norm, 2.
  out = ARC().transform(ROWS, f=2).numpy()
  np.testing.assert_allclose(out, [[1.2, 1.6], [0., 2.], [1., 0.], [0., .5], [1.2, 1.6]])


def test_no_byzantine_changes_nothing():
  np.testing.assert_array_equal(ARC().transform(ROWS, f=0).numpy(), ROWS)


def test_non_finite_row_counts_as_largest_and_becomes_zero():
  # k=1: the NaN row takes the clipped slot, so the threshold is the largest finite norm (10): all else stays.
  x = np.concatenate([ROWS[:4], [[np.nan, 1.]], ROWS[4:]])
  out = ARC().transform(x, f=1).numpy()  # n=6, f=1 -> k = floor(10/6) = 1
  np.testing.assert_allclose(out, np.concatenate([ROWS[:4], [[0., 0.]], ROWS[4:]]))


def test_check_boundary():
  ARC().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("arc needs n > 2f, got n=4, f=2")):
    ARC().check(n=4, f=2)
  assert ARC.keeps_rows


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: ARC().transform(g, f=2), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant(ROWS, tf.float32)).numpy(),
                             [[1.2, 1.6], [0., 2.], [1., 0.], [0., .5], [1.2, 1.6]], rtol=1e-6)
