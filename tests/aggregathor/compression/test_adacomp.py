"""aggregathor.compression.adacomp: Hardy et al.'s per-variable top-k, against hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import compression


def test_each_variable_sends_its_largest_entries_at_the_rate():
  # Two variables of 10 and 4 entries at c = 0.2: k = 2 and max(1, ⌊0.8⌋) = 1.
  adacomp = compression.get("adacomp", 14, [10, 4], compression_rate=0.2)
  assert adacomp.ks == [2, 1] and adacomp.payload_bytes == 24
  row = np.array([[0.1, 5, 0, -7, 0, 0, 1, 0, 0, 0.2,   0.3, -0.4, 0.1, 0]], np.float32)
  received, state = adacomp.roundtrip(tf.constant(row))
  np.testing.assert_allclose(received.numpy(), [[0, 5, 0, -7, 0, 0, 0, 0, 0, 0,   0, -0.4, 0, 0]])
  assert state == {}  # no residual, as in the reference code


def test_nothing_is_carried_across_steps():
  adacomp = compression.get("adacomp", 4, compression_rate=0.25)
  for _ in range(2):
    received, _ = adacomp.roundtrip(tf.constant([[1.0, 0.6, 0.0, 0.0]]))
    np.testing.assert_allclose(received.numpy(), [[1.0, 0, 0, 0]])


def test_the_model_variables_must_cover_the_row():
  with pytest.raises(ValueError, match="add up to the dimension 14"):
    compression.get("adacomp", 14, [10, 3])
  with pytest.raises(ValueError, match="compression_rate must be"):
    compression.get("adacomp", 14, compression_rate=-1)
