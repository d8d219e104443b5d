"""Tests of the `nan` attack."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import attacks


def test_every_coordinate_is_nan():
  out = attacks.get("nan")(np.ones((4, 3), np.float32), 2, 2)
  assert out.shape == (2, 3) and out.dtype == tf.float32
  assert np.isnan(out.numpy()).all()
