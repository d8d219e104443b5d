"""Tests of the `sign-flip` attack."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import attacks


def test_negated_honest_mean():
  honest = np.array([[1., -2.], [3., 0.]], np.float32)  # mean (2, -1)
  out = attacks.get("sign-flip")(honest, 3, 1)
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), [[-2., 1.]] * 3)
