"""Tests of the `mimic` attack (Karimireddy et al., ICLR 2022)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks


def test_copies_the_worker_farthest_along_the_top_principal_direction():
  # Spread mostly along x: the top principal direction is about the x axis and
  # worker 3 (x = 5) projects farthest on it from the mean (1.25, 0.025).
  honest = np.array([[0., 0.], [1., 0.], [-1., 0.], [5., .1]])
  np.testing.assert_array_equal(attacks.get("mimic")(honest, 2, 2).numpy(), [[5., .1]] * 2)


def test_principal_direction_not_largest_distance():
  # Six workers at x = +-3 (the first at 3.5) and one at (0, 5). Scatter along x
  # is about 55, along y about 21: the top direction is x, on which worker 0
  # projects farthest (~3.43), although worker 6 is the farthest from the mean
  # (~4.29 against ~3.48): mimic must pick 0, a distance-based choice 6.
  honest = np.array([[3.5, 0.], [3., 0.], [3., 0.], [-3., 0.], [-3., 0.], [-3., 0.], [0., 5.]])
  mean = honest.mean(axis=0)
  assert np.argmax(np.linalg.norm(honest - mean, axis=1)) == 6
  np.testing.assert_array_equal(attacks.get("mimic")(honest, 1, 1).numpy(), [[3.5, 0.]])


def test_all_equal_honest_gradients():
  honest = np.tile([[1., 2., 3.]], (4, 1)).astype(np.float32)
  out = attacks.get("mimic")(honest, 3, 1)
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), np.tile([[1., 2., 3.]], (3, 1)))


def test_forced_worker():
  honest = np.arange(12.).reshape(4, 3)
  np.testing.assert_array_equal(attacks.get("mimic")(honest, 2, 2, worker=2).numpy(), [[6., 7., 8.]] * 2)


@pytest.mark.parametrize("worker, message", [
    (4, "attack mimic needs 0 <= worker <= 3, got worker=4"),
    (-1, "attack mimic needs 0 <= worker <= 3"),
    (True, "attack mimic expects worker as an int"),
    (1.0, "attack mimic expects worker as an int"),
])
def test_bad_worker(worker, message):
  with pytest.raises(ValueError, match=message):
    attacks.get("mimic")(np.ones((4, 3)), 2, 2, worker=worker)


def test_compiles_with_xla():
  honest = tf.constant([[0., 0.], [1., 0.], [-1., 0.], [5., .1]])
  out = tf.function(lambda x: attacks.get("mimic")(x, 2, 2), jit_compile=True)(honest)
  np.testing.assert_allclose(out.numpy(), [[5., .1]] * 2)
