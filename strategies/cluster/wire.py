"""The bytes of the two messages of a step: weights from the parameter server, one gradient row back.

No protobuf, no pickle: a fixed little-endian header, then the float32 values.

    weights:  b"AGW1" | step: u64 | count: u64 | count float32
    row:      b"AGR1" | step: u64 | count: u64 | loss: f64 | accuracy: f64 | count float32

A message is refused unless it has exactly the expected length, magic, step and
count; the values themselves may be anything a float32 holds, NaN included
(judging them is the rule's job).
"""

from __future__ import annotations

import struct

import numpy as np

WEIGHTS_MAGIC = b"AGW1"
ROW_MAGIC = b"AGR1"
WEIGHTS_HEADER = struct.Struct("<4sQQ")
ROW_HEADER = struct.Struct("<4sQQdd")
DTYPE = np.dtype("<f4")


class RefusedMessage(ValueError):
  """A message that is not the one expected; `reason` is one word, for counting ("size", "step", ...)."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def weights_size(count: int) -> int:
  return WEIGHTS_HEADER.size + count * DTYPE.itemsize


def row_size(count: int) -> int:
  return ROW_HEADER.size + count * DTYPE.itemsize


def encode_weights(step: int, weights: np.ndarray) -> bytes:
  values = np.ascontiguousarray(weights, DTYPE).reshape(-1)
  return WEIGHTS_HEADER.pack(WEIGHTS_MAGIC, step, values.size) + values.tobytes()


def decode_weights(data: bytes, count: int) -> tuple[int, np.ndarray]:
  """(step, weights) of a weights message of `count` values."""
  _check(data, weights_size(count), WEIGHTS_HEADER, WEIGHTS_MAGIC, "weights")
  magic, step, got = WEIGHTS_HEADER.unpack_from(data)
  del magic
  if got != count:
    raise RefusedMessage("count", f"weights of {got} values, expected {count}")
  return step, np.frombuffer(data, DTYPE, count, WEIGHTS_HEADER.size)


def encode_row(step: int, row: np.ndarray, loss: float, accuracy: float) -> bytes:
  values = np.ascontiguousarray(row, DTYPE).reshape(-1)
  return ROW_HEADER.pack(ROW_MAGIC, step, values.size, loss, accuracy) + values.tobytes()


def decode_row(data: bytes, step: int, count: int) -> tuple[np.ndarray, float, float]:
  """(row, loss, accuracy) of the answer to step `step`, which must hold `count` values."""
  _check(data, row_size(count), ROW_HEADER, ROW_MAGIC, "row")
  _, got_step, got_count, loss, accuracy = ROW_HEADER.unpack_from(data)
  if got_step != step:
    raise RefusedMessage("step", f"a row of step {got_step}, expected step {step}")
  if got_count != count:
    raise RefusedMessage("count", f"a row of {got_count} values, expected {count}")
  return np.frombuffer(data, DTYPE, count, ROW_HEADER.size), loss, accuracy


def _check(data: bytes, size: int, header: struct.Struct, magic: bytes, what: str) -> None:
  if not isinstance(data, bytes):
    raise RefusedMessage("type", f"a {what} message must be bytes, got {type(data).__name__}")
  if len(data) != size:
    raise RefusedMessage("size", f"a {what} message of {len(data)} bytes, expected {size}")
  if data[:4] != magic:
    raise RefusedMessage("magic", f"a {what} message must start with {magic!r}, got {data[:4]!r}")
  del header
