"""Top-k sparsification with error feedback."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from aggregathor import compression
from aggregathor.compression._base import Payload, State, check_fraction, scatter_rows


@compression.register
class TopK(compression.Compressor):
  """Each worker sends the k = max(1, ⌊ratio·d⌋) coordinates of largest magnitude of its residual.

  Error feedback (Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory",
  NeurIPS 2018; Karimireddy et al., "Error Feedback Fixes SignSGD and other
  Gradient Compression Schemes", ICML 2019): the residual r accumulates what was
  not sent, r ← r + g, the worker sends s = top_k(r), then r ← r − s. So what
  was sent plus the residual is always the sum of the gradients. Ties in
  magnitude go to the lower coordinate (`tf.math.top_k`'s order).
  With `error_feedback: false` nothing is kept. On the wire: k (int32 index,
  float32 value) pairs, 8·k bytes.
  """

  name = "topk"
  reference = "Stich et al., NeurIPS 2018 (with memory)"
  params = {"ratio": 0.01, "error_feedback": True}

  def __init__(self, dimension: int, segments: Sequence[int] | None = None, **args: Any):
    super().__init__(dimension, segments, **args)
    self.k = max(1, int(check_fraction(self.name, "ratio", self.args["ratio"]) * dimension))
    if not isinstance(self.args["error_feedback"], bool):
      raise ValueError(f"compressor topk: error_feedback must be true or false, got {self.args['error_feedback']!r}")

  def init_state(self, rows: int) -> State:
    return {"residual": tf.zeros([rows, self.dimension])} if self.args["error_feedback"] else {}

  def encode(self, rows: tf.Tensor, state: State) -> tuple[Payload, State]:
    accumulated = rows + state["residual"] if self.args["error_feedback"] else rows
    _, indices = tf.math.top_k(tf.abs(accumulated), self.k, sorted=False)
    values = tf.gather(accumulated, indices, batch_dims=1)
    payload = {"indices": indices, "values": values}
    if not self.args["error_feedback"]:
      return payload, state
    return payload, {"residual": accumulated - scatter_rows(indices, values, self.dimension)}

  def decode(self, payload: Payload) -> tf.Tensor:
    return scatter_rows(payload["indices"], payload["values"], self.dimension)

  @property
  def payload_bytes(self) -> int:
    return 8 * self.k
