"""AdaComp (Hardy, Le Merrer, Sericola): per-variable top-k at a compression rate, no residual."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from aggregathor import compression
from aggregathor.compression._base import Payload, State, check_fraction, scatter_rows


@compression.register
class AdaComp(compression.Compressor):
  """For each of the model's variables, of n_v entries, a worker sends the k_v = max(1, ⌊c·n_v⌋) of largest |g|.

  Hardy, Le Merrer, Sericola, "Distributed deep learning on edge-devices:
  feasibility via adaptive compression", IEEE NCA 2017 (their reference code's
  `encode_variables`): c is `compression_rate` (default 0.01), and nothing is
  accumulated of what was not sent. Ties in magnitude go to the lower
  coordinate. Its asynchronous parameter server divides each coordinate's step
  by its staleness (`aggregathor.compression.staleness`). On the wire: Σ k_v
  (int32 index, float32 value) pairs, 8·Σ k_v bytes.
  """

  name = "adacomp"
  reference = "Hardy et al., IEEE NCA 2017"
  params = {"compression_rate": 0.01}

  def __init__(self, dimension: int, segments: Sequence[int] | None = None, **args: Any):
    super().__init__(dimension, segments, **args)
    rate = check_fraction(self.name, "compression_rate", self.args["compression_rate"])
    self.ks = [max(1, int(rate * size)) for size in self.segments]
    self.offsets = [sum(self.segments[:i]) for i in range(len(self.segments))]

  def encode(self, rows: tf.Tensor, state: State) -> tuple[Payload, State]:
    indices, values = [], []
    # One top-k per variable (a loop over the model's variables, not over coordinates).
    for part, k, offset in zip(tf.split(rows, self.segments, axis=1), self.ks, self.offsets):
      _, chosen = tf.math.top_k(tf.abs(part), k, sorted=False)
      indices.append(chosen + offset)
      values.append(tf.gather(part, chosen, batch_dims=1))
    return {"indices": tf.concat(indices, axis=1), "values": tf.concat(values, axis=1)}, state

  def decode(self, payload: Payload) -> tf.Tensor:
    return scatter_rows(payload["indices"], payload["values"], self.dimension)

  @property
  def payload_bytes(self) -> int:
    return 8 * sum(self.ks)
