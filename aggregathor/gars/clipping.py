"""Static norm clipping, a pre-aggregation."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from aggregathor import gars, ops


def clip_rows(gradients: tf.Tensor, threshold: float | tf.Tensor, norms: tf.Tensor | None = None) -> tf.Tensor:
  """Scales each row down to L2 norm `threshold` when above it, keeping its direction.

  A row with a NaN or ±inf coordinate, or whose norm overflows the dtype, has no
  usable direction and becomes a zero row. `norms` may pass precomputed
  `ops.row_norms(gradients)`.
  """
  norms = ops.row_norms(gradients) if norms is None else norms
  # A Python number goes straight to the gradients' dtype: tf.cast would first round it to float32.
  if isinstance(threshold, (tf.Tensor, tf.Variable)):
    threshold = tf.cast(threshold, gradients.dtype)
  else:
    threshold = tf.constant(threshold, gradients.dtype)
  # An unclipped row is multiplied by exactly 1, so it comes back bit for bit.
  factors = tf.where(norms > threshold, threshold / norms, tf.ones_like(norms))
  usable = tf.math.is_finite(norms)[:, None]
  return tf.where(usable, gradients * factors[:, None], tf.zeros_like(gradients))


@gars.register
class Clipping(gars.PreAggregation):
  """Clips each gradient to L2 norm at most `threshold` (direction kept).

  Static clipping as a pre-aggregation, the baseline of Allouah, Guerraoui,
  Gupta, Pinot, Rizk, "Boosting Robustness by Clipping Gradients in Distributed
  Learning", 2024 (arXiv:2405.14432), who show that a fixed radius can void a
  rule's robustness guarantee (see `arc`, their adaptive clipping). `threshold` has no default: a fixed
  radius only makes sense relative to the model's gradient norms, so it must be
  given (e.g. `clipping.threshold=5.0` in a chain). A gradient with a NaN or
  ±inf coordinate (or a norm beyond the dtype's range) has no usable direction
  and becomes a zero vector. Keeps n
  rows, row i still worker i; any n and f are accepted.
  """

  name = "clipping"
  reference = "static clipping, as discussed by Allouah et al., arXiv:2405.14432"
  params = {"threshold": None}

  def _check(self, n: int, f: int, threshold: Any) -> None:
    del n, f
    if threshold is None:
      raise ValueError("clipping needs a threshold: pass threshold=<positive float> (e.g. clipping.threshold=5.0 "
                       "in a chain), the L2 norm each gradient is clipped to")
    gars.check_positive_float(self.name, "threshold", threshold)

  def _transform(self, gradients: tf.Tensor, f: int, threshold: float) -> tf.Tensor:
    del f
    return clip_rows(gradients, threshold)
