"""Base class of the gradient compressors."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import tensorflow as tf

Payload = dict[str, tf.Tensor]
State = dict[str, tf.Tensor]


class Compressor:
  """Encodes the n workers' (n, d) rows into what they send, and decodes it back, with explicit state.

  Subclasses set `name`, `reference` and `params` (argument name -> default),
  check their arguments in `__init__`, and implement `encode`, `decode` and
  `payload_bytes`; those with state (residuals) override `init_state`.
  """

  name: ClassVar[str] = ""
  reference: ClassVar[str] = ""
  params: ClassVar[Mapping[str, Any]] = {}

  def __init__(self, dimension: int, segments: Sequence[int] | None = None, **args: Any):
    if not isinstance(dimension, int) or dimension < 1:
      raise ValueError(f"compressor {self.name}: expected a dimension >= 1, got {dimension!r}")
    segments = [dimension] if segments is None else [int(size) for size in segments]
    if sum(segments) != dimension or any(size < 1 for size in segments):
      raise ValueError(f"compressor {self.name}: the variables' sizes {segments} must be >= 1 and add up to the "
                       f"dimension {dimension}")
    unknown = sorted(set(args) - set(self.params))
    if unknown:
      raise ValueError(f"compressor {self.name} got unknown argument(s) {', '.join(unknown)}; accepted: "
                       f"{', '.join(sorted(self.params)) or 'none'}")
    self.dimension = dimension
    self.segments = segments
    self.args = {**self.params, **args}

  def __repr__(self) -> str:
    return f"compression.get({self.name!r}, {self.dimension}, **{self.args})"

  def get_config(self) -> dict[str, Any]:
    """What rebuilds it in another process: compression.get(**config)."""
    return {"name": self.name, "dimension": self.dimension, "segments": list(self.segments), **self.args}

  def init_state(self, rows: int) -> State:
    """The state of `rows` workers before their first row (none by default)."""
    del rows
    return {}

  def encode(self, rows: tf.Tensor, state: State) -> tuple[Payload, State]:
    """(what each of the n workers sends, the new state), for their (n, d) rows."""
    raise NotImplementedError

  def decode(self, payload: Payload) -> tf.Tensor:
    """The (n, d) rows the payload stands for; coordinates not sent are 0."""
    raise NotImplementedError

  @property
  def payload_bytes(self) -> int:
    """The bytes one worker sends per step (its payload on the wire)."""
    raise NotImplementedError

  def roundtrip(self, rows: tf.Tensor, state: State | None = None) -> tuple[tf.Tensor, State]:
    """decode(encode(rows)): what the parameter server receives, with the new state."""
    state = self.init_state(rows.shape[0]) if state is None else state
    payload, state = self.encode(rows, state)
    return self.decode(payload), state


def check_fraction(compressor: str, name: str, value: Any) -> float:
  """`value` as a fraction in (0, 1], or a `ValueError` that says so."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
    raise ValueError(f"compressor {compressor}: {name} must be a number in (0, 1], got {value!r}")
  return float(value)


def scatter_rows(indices: tf.Tensor, values: tf.Tensor, dimension: int) -> tf.Tensor:
  """(n, d) rows holding values[i, j] at indices[i, j], 0 elsewhere; indices (n, k) int32, values (n, k)."""
  n, k = indices.shape
  rows = tf.repeat(tf.range(n, dtype=tf.int32)[:, None], k, axis=1)
  coordinates = tf.stack([rows, indices], axis=-1)
  return tf.scatter_nd(coordinates, values, [n, dimension])
