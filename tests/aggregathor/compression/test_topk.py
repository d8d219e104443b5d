"""aggregathor.compression.topk: top-k with error feedback, against hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import compression


def test_sends_the_largest_magnitudes_and_keeps_the_rest():
  topk = compression.get("topk", 5, ratio=0.4)  # k = 2
  rows = tf.constant([[0.1, -3.0, 2.0, 0.5, -0.2], [1.0, 1.0, -1.0, 0.0, 0.0]])
  payload, state = topk.encode(rows, topk.init_state(2))
  np.testing.assert_allclose(topk.decode(payload).numpy(), [[0, -3, 2, 0, 0], [1, 1, 0, 0, 0]])  # ties: lowest first
  np.testing.assert_allclose(state["residual"].numpy(), [[0.1, 0, 0, 0.5, -0.2], [0, 0, -1, 0, 0]])
  assert topk.payload_bytes == 16 and topk.k == 2


def test_error_feedback_conserves_what_was_sent_plus_the_residual():
  rng = np.random.default_rng(0)
  topk = compression.get("topk", 50, ratio=0.1)
  state, sent, total = topk.init_state(3), np.zeros((3, 50)), np.zeros((3, 50))
  for _ in range(20):
    gradient = rng.normal(size=(3, 50)).astype(np.float32)
    received, state = topk.roundtrip(tf.constant(gradient), state)
    sent += received.numpy()
    total += gradient
    assert np.count_nonzero(received.numpy(), axis=1).max() <= 5
  np.testing.assert_allclose(sent + state["residual"].numpy(), total, atol=1e-4)


def test_a_residual_entry_is_sent_once_it_grows_large_enough():
  topk = compression.get("topk", 4, ratio=0.25)
  state = topk.init_state(1)
  received, state = topk.roundtrip(tf.constant([[1.0, 0.6, 0.0, 0.0]]), state)
  np.testing.assert_allclose(received.numpy(), [[1.0, 0, 0, 0]])
  received, state = topk.roundtrip(tf.constant([[0.5, 0.6, 0.0, 0.0]]), state)  # residual 0.6 + 0.6 beats 0.5
  np.testing.assert_allclose(received.numpy(), [[0, 1.2, 0, 0]])


def test_without_error_feedback_nothing_is_kept():
  topk = compression.get("topk", 4, ratio=0.25, error_feedback=False)
  assert topk.init_state(2) == {}
  received, state = topk.roundtrip(tf.constant([[1.0, 0.6, 0.0, 0.0]]))
  np.testing.assert_allclose(received.numpy(), [[1.0, 0, 0, 0]])
  assert state == {}


@pytest.mark.parametrize("args, message", [
    ({"ratio": 0}, r"ratio must be a number in \(0, 1\]"), ({"ratio": 2.0}, "ratio"),
    ({"error_feedback": "yes"}, "true or false"), ({"rate": 0.1}, "unknown argument"),
])
def test_bad_arguments_say_what_is_expected(args, message):
  with pytest.raises(ValueError, match=message):
    compression.get("topk", 10, **args)
