"""Tests of the `nnm` (nearest-neighbour mixing) pre-aggregation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars
from aggregathor.gars.nnm import NNM


def test_hand_computed():
  # n = 4, f = 1: each row becomes the mean of its 3 nearest, itself included.
  #   0 -> 0, 1, 3; 1 -> 1, 0, 3; 3 -> 3, 1, 0 (10 is 7 away); 10 -> 10, 3, 1.
  out = NNM().transform(np.array([[0.], [1.], [3.], [10.]]), f=1)
  np.testing.assert_allclose(out.numpy(), [[4 / 3], [4 / 3], [4 / 3], [14 / 3]])


def test_two_dimensions_hand_computed():
  # A=(0,0), B=(2,0), C=(0,3), D=(7,3), E=(8,-7); squared distances AB 4, AC 9, AD 58, AE 113, BC 13,
  # BD 34, BE 85, CD 49, CE 164, DE 101. n = 5, f = 2, so the 3 nearest (itself included):
  # A: A, B, C; B: B, A, C; C: C, A, B; D: D, B, C; E: E, B, D.
  x = np.array([[0., 0.], [2., 0.], [0., 3.], [7., 3.], [8., -7.]])
  out = NNM().transform(x, f=2)
  np.testing.assert_allclose(out.numpy(), [[2 / 3, 1], [2 / 3, 1], [2 / 3, 1], [3, 2], [17 / 3, -4 / 3]])


def test_no_byzantine_mixes_everything():
  x = np.array([[1., 0.], [2., 6.], [6., 3.]])
  np.testing.assert_allclose(NNM().transform(x, f=0).numpy(), np.full((3, 2), 3.))


def test_non_finite_row_taints_only_its_own_mix():
  # The NaN row is at +inf from all, so only its own mix holds it; the others stay exact.
  out = NNM().transform(np.array([[0.], [1.], [3.], [np.nan]]), f=1).numpy()
  np.testing.assert_allclose(out[:3], [[4 / 3]] * 3)
  assert np.isnan(out[3, 0])
  out = NNM().transform(np.array([[0., 1.], [1., 1.], [np.inf, 0.], [3., 1.]]), f=1).numpy()
  np.testing.assert_allclose(out[[0, 1, 3]], [[4 / 3, 1.]] * 3)
  assert np.all(np.isnan(out[2]))


def test_shape_and_rows():
  assert NNM.keeps_rows is False
  assert NNM().output_count(7, 2) == 7


def test_check_boundary():
  NNM().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("nnm needs n > 2f, got n=4, f=2")):
    NNM().check(n=4, f=2)
  with pytest.raises(ValueError, match=re.escape("nnm needs n > 2f, got n=4, f=2")):
    gars.get("nnm>average").aggregate(np.ones((4, 2)), f=2)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: NNM().transform(g, f=1), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant([[0.], [1.], [3.], [10.]], tf.float32)).numpy(),
                             [[4 / 3], [4 / 3], [4 / 3], [14 / 3]], rtol=1e-6)
