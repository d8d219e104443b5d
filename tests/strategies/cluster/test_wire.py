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


X_SPEC, Y_SPEC = ((2, 3), "uint8"), ((), "int64")


def test_batch_round_trips():
  weights = np.arange(4, dtype=np.float32)
  x = np.arange(30, dtype=np.uint8).reshape(5, 2, 3)
  y = np.arange(5, dtype=np.int64)
  step, got_weights, got_x, got_y = wire.decode_batch(wire.encode_batch(9, weights, x, y), 4, X_SPEC, Y_SPEC, 8)
  assert step == 9
  np.testing.assert_array_equal(got_weights, weights)
  np.testing.assert_array_equal(got_x, x)
  np.testing.assert_array_equal(got_y, y)
  assert got_x.dtype == np.uint8 and got_y.dtype == np.int64


BATCH = wire.encode_batch(1, np.ones(4, np.float32), np.zeros((2, 2, 3), np.uint8), np.zeros(2, np.int64))


@pytest.mark.parametrize("data, reason", [
    (BATCH + b"\0", "size"),
    (BATCH[:-1], "size"),
    (b"XXXX" + BATCH[4:], "magic"),
    (b"AG", "magic"),
    (wire.encode_batch(1, np.ones(5, np.float32), np.zeros((2, 2, 3), np.uint8), np.zeros(2, np.int64)), "count"),
    (wire.encode_batch(1, np.ones(4, np.float32), np.zeros((9, 2, 3), np.uint8), np.zeros(9, np.int64)),
     "examples"),  # more than the job's largest slice
    (wire.BATCH_HEADER.pack(wire.BATCH_MAGIC, 1, 4, 0) + np.ones(4, np.float32).tobytes(), "examples"),
    # Inputs of another dtype: the byte count no longer matches.
    (wire.encode_batch(1, np.ones(4, np.float32), np.zeros((2, 2, 3), np.float32), np.zeros(2, np.int64)), "size"),
])
def test_refused_batches(data, reason):
  with pytest.raises(wire.RefusedMessage) as error:
    wire.decode_batch(data, 4, X_SPEC, Y_SPEC, 8)
  assert error.value.reason == reason


def test_unknown_dtype_cannot_cross_the_wire():
  with pytest.raises(ValueError, match="dtype 'object' cannot cross the wire"):
    wire.decode_batch(BATCH, 4, ((2, 3), "object"), Y_SPEC, 8)
