"""A compressor's payload on the wire: what a worker process sends instead of its row, and its checked decoding.

With `--compression` on a cluster, each worker process compresses its row with
its own compressor state (its residual, which stays on the worker) and sends
the payload's fields end to end, in name order, each of the fixed shape and
dtype the compressor gives one worker, little-endian. The bytes travel inside
an ordinary row message (`wire`) as that many float32 words, so the message's
size, magic, step and count are checked as for any row. The parameter server
then rebuilds the payload and decodes it with the compressor: a field of the
wrong length is refused ("size"), and one the compressor cannot decode (an
index out of range) is refused as "payload". The values may be anything (the
rule judges them), and nothing is unpickled.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from strategies.cluster import wire


class PayloadEncoder:
  """A sender's side: the payload words of its rows, from a job's compression field, its state (residual) kept.

  A restarted sender starts from a zero state.
  """

  def __init__(self, settings: dict, dimension: int):
    from aggregathor import compression  # pylint: disable=g-import-not-at-top
    settings = dict(settings)
    try:
      name, size, segments = settings.pop("name"), settings.pop("dimension"), settings.pop("segments")
    except KeyError as error:
      raise ValueError(f"job field compression: expected name, dimension, segments and the arguments, got "
                       f"{sorted(settings)}") from error
    if size != dimension:
      raise ValueError(f"job field compression: a compressor of {size} coordinates for {dimension}")
    compressor = compression.get(name, size, segments, **settings)
    self.codec = PayloadCodec(compressor)
    state = self.state = {key: tf.Variable(value, trainable=False, name=f"compression_{key}")
                          for key, value in compressor.init_state(1).items()}

    @tf.function
    def encode(row):
      payload, new_state = compressor.encode(row[None], {key: variable.value() for key, variable in state.items()})
      for key, value in new_state.items():
        state[key].assign(value)
      return payload

    self._encode = encode

  def words(self, row: np.ndarray) -> np.ndarray:
    """The payload words sent for `row` (d,), the state updated."""
    payload = self._encode(tf.constant(row, tf.float32))
    return self.codec.to_words({key: value.numpy() for key, value in payload.items()})


class PayloadCodec:
  """One worker's payload of `compressor` as bytes (a multiple of 4) and back; `words` float32 words on the wire."""

  def __init__(self, compressor):
    self.compressor = compressor
    example, _ = compressor.encode(tf.zeros([1, compressor.dimension]), compressor.init_state(1))
    self.fields = [(name, tuple(example[name].shape[1:]), np.dtype(example[name].dtype.as_numpy_dtype).newbyteorder("<"))
                   for name in sorted(example)]
    self.sizes = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for _, shape, dtype in self.fields]
    size = sum(self.sizes)
    self.padding = -size % wire.DTYPE.itemsize
    self.size = size + self.padding
    self.words = self.size // wire.DTYPE.itemsize

  def to_words(self, payload) -> np.ndarray:
    """The (words,) float32 view of one worker's payload (each field with leading dimension 1)."""
    parts = [np.ascontiguousarray(np.asarray(payload[name]).reshape(shape), dtype).tobytes()
             for name, shape, dtype in self.fields]
    return np.frombuffer(b"".join(parts) + b"\0" * self.padding, wire.DTYPE)

  def decode(self, words: np.ndarray) -> np.ndarray:
    """The (d,) row a worker's payload words stand for (`wire.RefusedMessage` if they are not one)."""
    data = np.ascontiguousarray(words, wire.DTYPE).tobytes()
    if len(data) != self.size:
      raise wire.RefusedMessage("size", f"a payload of {len(data)} bytes, expected {self.size}")
    payload, offset = {}, 0
    for (name, shape, dtype), size in zip(self.fields, self.sizes):
      payload[name] = tf.constant(np.frombuffer(data, dtype, size // dtype.itemsize, offset).reshape((1, *shape)))
      offset += size
    try:
      row = self.compressor.decode(payload)
    except (tf.errors.InvalidArgumentError, ValueError) as error:
      raise wire.RefusedMessage("payload", f"a {self.compressor.name} payload that does not decode: "
                                           f"{str(error).splitlines()[0][:200]}") from error
    return row.numpy()[0].astype(np.float32, copy=False)


def decode_row(answer: bytes, step: int, count: int, codec: PayloadCodec | None) -> tuple[np.ndarray, float, float]:
  """(row, loss, accuracy) of a worker's answer to `step`: `count` float32 values, or with `codec` its payload
  words decoded (`wire.RefusedMessage` if it is neither)."""
  if codec is None:
    return wire.decode_row(answer, step, count)
  words, loss, accuracy = wire.decode_row(answer, step, codec.words)
  return codec.decode(words), loss, accuracy
