"""Adaptive robust clipping (ARC), a pre-aggregation."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import gars, ops
from aggregathor.gars.clipping import clip_rows


def clipped_count(n: int, f: int) -> int:
  """k = floor(2 (f/n) (n-f)): how many of the largest gradients ARC clips."""
  return math.floor(2 * f * (n - f) / n)


@gars.register
class ARC(gars.PreAggregation):
  """ARC: the k largest-norm gradients are clipped to the norm of the (k+1)-th largest.

  Allouah, Guerraoui, Gupta, Pinot, Rizk, "Boosting Robustness by Clipping
  Gradients in Distributed Learning", 2024 (arXiv:2405.14432), with
  k = floor(2 (f/n) (n-f)). The paper's guarantees assume n > 2f, which check()
  enforces. A gradient with a NaN or ±inf coordinate counts as the largest and,
  having no usable direction, becomes a zero vector (as in `clipping`). Keeps n
  rows, row i still worker i.
  """

  name = "arc"
  reference = "Allouah et al., arXiv:2405.14432 (2024)"

  def _check(self, n: int, f: int) -> None:
    if n <= 2 * f:
      raise ValueError(f"arc needs n > 2f, got n={n}, f={f}")

  def _transform(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    k = clipped_count(gradients.shape[0], f)  # k < n always, so the (k+1)-th largest exists
    # Clipping every row at the (k+1)-th largest norm changes exactly the k largest ones, ties aside.
    norms = ops.row_norms(gradients)
    threshold = tf.math.top_k(norms, k=k + 1, sorted=True).values[k]
    return clip_rows(gradients, threshold, norms)
