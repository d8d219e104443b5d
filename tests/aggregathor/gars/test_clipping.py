"""Tests of the static `clipping` pre-aggregation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars
from aggregathor.gars.clipping import Clipping, clip_rows


def test_hand_computed():
  x = np.array([[3., 4.], [.3, .4], [np.nan, 1.], [np.inf, 0.], [0., 0.], [0., -7.]])
  out = Clipping().transform(x, f=0, threshold=1.).numpy()
  np.testing.assert_allclose(out, [[.6, .8], [.3, .4], [0., 0.], [0., 0.], [0., 0.], [0., -1.]])
  np.testing.assert_array_equal(out[1], x[1])  # below the threshold: unchanged, bit for bit


def test_float64_rows_are_clipped_at_the_float64_threshold():
  # 0.1 rounded to float32 is 0.10000000149: clipping at it would be off by 1.5e-8 relative.
  x = np.array([[3., 4.], [0., 1e-3]], np.float64)
  out = Clipping().transform(x, f=0, threshold=0.1).numpy()
  np.testing.assert_array_equal(out, [[0.1 / 5 * 3, 0.1 / 5 * 4], [0., 1e-3]])
  tensor_threshold = clip_rows(tf.constant(x), tf.constant(0.1, tf.float64)).numpy()
  np.testing.assert_array_equal(tensor_threshold, out)


def test_huge_finite_rows_keep_their_direction():
  # 1e30 squared overflows float32; the row is finite, so it is scaled, not dropped.
  x = np.array([[1e30, 0.], [-1e30, 1e30], [1., 0.]], np.float32)
  out = Clipping().transform(x, f=0, threshold=2.).numpy()
  np.testing.assert_allclose(out, [[2., 0.], [-np.sqrt(2), np.sqrt(2)], [1., 0.]], rtol=1e-6)


def test_threshold_is_required_and_validated():
  with pytest.raises(ValueError, match=re.escape("clipping needs a threshold: pass threshold=<positive float>")):
    Clipping().check(n=3, f=0)
  with pytest.raises(ValueError, match=re.escape("clipping needs a threshold")):
    gars.get("clipping>average").aggregate(np.ones((3, 2)), f=0)
  for bad in (0., -1., float("nan"), float("inf")):
    with pytest.raises(ValueError, match="clipping needs a finite threshold > 0"):
      Clipping().check(n=3, f=0, threshold=bad)
  with pytest.raises(ValueError, match=re.escape("clipping expects threshold as a number, got '1'")):
    Clipping().check(n=3, f=0, threshold="1")


def test_in_a_chain():
  x = np.array([[3., 4.], [.3, .4]])
  out = gars.get("clipping>average").aggregate(x, f=0, threshold=1.)
  np.testing.assert_allclose(out.numpy(), [.45, .6])
  assert Clipping.keeps_rows


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: Clipping().transform(g, f=0, threshold=1.), jit_compile=jit_compile)
  out = compiled(tf.constant([[3., 4.], [np.nan, 0.], [.1, 0.]], tf.float32)).numpy()
  np.testing.assert_allclose(out, [[.6, .8], [0., 0.], [.1, 0.]], rtol=1e-6)
