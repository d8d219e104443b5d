"""Tests of the `inf` attack."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks


def test_positive_infinity_by_default():
  out = attacks.get("inf")(np.zeros((3, 4)), 2, 1)
  np.testing.assert_array_equal(out.numpy(), np.full((2, 4), np.inf))


def test_negative_infinity():
  out = attacks.get("inf")(np.zeros((3, 4), np.float32), 1, 1, negative=True)
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), np.full((1, 4), -np.inf))


def test_negative_must_be_a_bool():
  with pytest.raises(ValueError, match="attack inf expects negative as a bool, got 1"):
    attacks.get("inf")(np.zeros((3, 4)), 1, 1, negative=1)
