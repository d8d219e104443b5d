"""The bytes of the two messages of a step: weights from the parameter server, one gradient row back.

No protobuf, no pickle: a fixed little-endian header, then the float32 values.

    weights:  b"AGW1" | step: u64 | count: u64 | count float32
    batch:    b"AGB1" | step: u64 | count: u64 | examples: u64 | count float32 | x | y
    row:      b"AGR1" | step: u64 | count: u64 | loss: f64 | accuracy: f64 | count float32

A batch message (for `model.fit` on the workers, see `keras_fit`) carries the
weights and this worker's slice of the batch, x then y, little-endian, in the
shapes and dtypes the job announced.

A message is refused unless it has exactly the expected length, magic, step and
count; the values themselves may be anything a float32 holds, NaN included
(judging them is the rule's job).
"""

from __future__ import annotations

import struct

import numpy as np

WEIGHTS_MAGIC = b"AGW1"
BATCH_MAGIC = b"AGB1"
ROW_MAGIC = b"AGR1"
WEIGHTS_HEADER = struct.Struct("<4sQQ")
ROW_HEADER = struct.Struct("<4sQQdd")
BATCH_HEADER = struct.Struct("<4sQQQ")
# The dtypes a batch's x and y may have.
TENSOR_DTYPES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")
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


def encode_batch(step: int, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> bytes:
  values = np.ascontiguousarray(weights, DTYPE).reshape(-1)
  x, y = np.asarray(x), np.asarray(y)
  if len(x) != len(y):
    raise ValueError(f"a batch of {len(x)} inputs and {len(y)} labels")
  return b"".join([BATCH_HEADER.pack(BATCH_MAGIC, step, values.size, len(x)), values.tobytes(),
                   _little_endian(x).tobytes(), _little_endian(y).tobytes()])


def decode_batch(data: bytes, count: int, x_spec: tuple[tuple[int, ...], str], y_spec: tuple[tuple[int, ...], str],
                 max_examples: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
  """(step, weights, x, y) of a batch message: `count` weights, then at most `max_examples` examples whose x and y
  have the per-example shapes and dtypes of `x_spec` and `y_spec`."""
  if not isinstance(data, bytes):
    raise RefusedMessage("type", f"a batch message must be bytes, got {type(data).__name__}")
  if len(data) < BATCH_HEADER.size or data[:4] != BATCH_MAGIC:
    raise RefusedMessage("magic", f"a batch message must start with {BATCH_MAGIC!r}, got {data[:4]!r}")
  _, step, got, examples = BATCH_HEADER.unpack_from(data)
  if got != count:
    raise RefusedMessage("count", f"weights of {got} values, expected {count}")
  if not 1 <= examples <= max_examples:
    raise RefusedMessage("examples", f"a batch of {examples} examples, expected 1 to {max_examples}")
  x_dtype, y_dtype = _dtype(x_spec[1]), _dtype(y_spec[1])
  x_size = examples * int(np.prod(x_spec[0], dtype=np.int64)) * x_dtype.itemsize
  y_size = examples * int(np.prod(y_spec[0], dtype=np.int64)) * y_dtype.itemsize
  expected = BATCH_HEADER.size + count * DTYPE.itemsize + x_size + y_size
  if len(data) != expected:
    raise RefusedMessage("size", f"a batch message of {len(data)} bytes, expected {expected}")
  offset = BATCH_HEADER.size
  weights = np.frombuffer(data, DTYPE, count, offset)
  offset += count * DTYPE.itemsize
  x = np.frombuffer(data, x_dtype, x_size // x_dtype.itemsize, offset).reshape((examples, *x_spec[0]))
  y = np.frombuffer(data, y_dtype, y_size // y_dtype.itemsize, offset + x_size).reshape((examples, *y_spec[0]))
  return step, weights, x, y


def _dtype(name: str) -> np.dtype:
  if name not in TENSOR_DTYPES:
    raise ValueError(f"dtype {name!r} cannot cross the wire; expected one of {', '.join(TENSOR_DTYPES)}")
  if name == "bfloat16":
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name).newbyteorder("<")


def _little_endian(array: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(array, array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype)


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
