"""aggregathor.compression.two_bit: MXNet's 2-bit quantisation, bit for bit, with the residual."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import compression


def test_codes_fill_words_in_mxnets_layout():
  # Values 0..3 of a word go to its first byte, top bits first: +τ, −τ, 0, 0 is 11 10 00 00 = 0xE0.
  two_bit = compression.get("2bit", 20, threshold=0.5)
  row = np.array([[0.6, -0.7, 0.1, 0.2] * 4 + [0.0, 0.0, 0.0, 0.5]], np.float32)
  payload, state = two_bit.encode(tf.constant(row), two_bit.init_state(1))
  assert payload["words"].dtype == tf.uint32 and payload["words"].numpy().tolist() == [[0xE0E0E0E0, 0x03]]
  np.testing.assert_allclose(two_bit.decode(payload).numpy(), [[0.5, -0.5, 0, 0] * 4 + [0, 0, 0, 0.5]])
  np.testing.assert_allclose(state["residual"].numpy(), [[0.1, -0.2, 0.1, 0.2] * 4 + [0, 0, 0, 0]], atol=1e-6)
  assert two_bit.payload_bytes == 8  # ⌈20/16⌉ words


def test_the_residual_is_carried_across_steps():
  two_bit = compression.get("2bit", 3, threshold=1.0)
  state, sent = two_bit.init_state(1), []
  for gradient in ([0.4, -0.6, 2.5], [0.4, -0.6, 0.0], [0.4, 0.0, 0.0]):
    received, state = two_bit.roundtrip(tf.constant([gradient]), state)
    sent.append(received.numpy()[0].tolist())
  # 0.4, 0.8, then 1.2 ≥ 1: sent; −0.6, −1.2: sent; 2.5 sends 1 a step while the residual lasts.
  assert sent == [[0, 0, 1], [0, -1, 1], [1, 0, 0]]
  np.testing.assert_allclose(state["residual"].numpy(), [[0.2, -0.2, 0.5]], atol=1e-6)


def test_the_threshold_must_be_positive():
  with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
    compression.get("2bit", 3, threshold=0)
