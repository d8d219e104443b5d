"""Tests of `strategies.cluster.wire`: the messages round-trip, and anything else is refused with its reason."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.cluster import wire


def test_round_trips():
  weights = np.arange(5, dtype=np.float32)
  step, decoded = wire.decode_weights(wire.encode_weights(7, weights), 5)
  assert step == 7 and decoded.dtype == np.float32
  np.testing.assert_array_equal(decoded, weights)
  row = np.array([1.5, np.nan, -np.inf], np.float32)  # any float32, judged by the rule, not here
  decoded, loss, accuracy = wire.decode_row(wire.encode_row(3, row, 0.25, 0.5), 3, 3)
  np.testing.assert_array_equal(decoded, row)
  assert (loss, accuracy) == (0.25, 0.5)


ROW = wire.encode_row(3, np.ones(4, np.float32), 0.0, 1.0)


@pytest.mark.parametrize("data, reason", [
    (ROW + b"\0\0\0\0", "size"),  # one value too many
    (ROW[:-4], "size"),
    (b"XXXX" + ROW[4:], "magic"),
    (wire.encode_row(2, np.ones(4, np.float32), 0.0, 1.0), "step"),  # a replayed row of an earlier step
    (wire.ROW_HEADER.pack(wire.ROW_MAGIC, 3, 5, 0.0, 1.0) + np.ones(4, np.float32).tobytes(), "count"),
    (wire.ROW_HEADER.pack(wire.ROW_MAGIC, 3, 4, 0.0, 1.0) + np.ones(2, np.float64).tobytes(), None),
    ("text", "type"),
])
def test_refused_rows_say_why(data, reason):
  if reason is None:
    # Same length, other dtype: bytes are bytes; the values are what float32 makes of them (the rule judges them).
    assert wire.decode_row(data, 3, 4)[0].dtype == np.float32
    return
  with pytest.raises(wire.RefusedMessage) as refused:
    wire.decode_row(data, 3, 4)
  assert refused.value.reason == reason


def test_refused_weights():
  with pytest.raises(wire.RefusedMessage, match="weights of 5 values, expected 4") as refused:
    wire.decode_weights(wire.WEIGHTS_HEADER.pack(wire.WEIGHTS_MAGIC, 0, 5) + np.ones(4, np.float32).tobytes(), 4)
  assert refused.value.reason == "count"
