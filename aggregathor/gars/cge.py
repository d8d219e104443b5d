"""Comparative gradient elimination (CGE)."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class CGE(gars.Rule):
  """CGE: the mean of the n-f gradients of smallest L2 norm.

  Gupta, Liu, Vaidya, "Byzantine Fault-Tolerant Distributed Machine Learning
  using Stochastic Gradient Descent (SGD) and Norm-Based Comparative Gradient
  Elimination (CGE)", DSN Workshops 2021. Their guarantee needs the fraction f/n
  below a constant set by the cost's strong convexity and smoothness, which is
  below 1/2; check() enforces the necessary n > 2f. A gradient with a
  non-finite coordinate has norm +inf and is dropped first.
  """

  name = "cge"
  reference = "Gupta, Liu, Vaidya, DSN-W 2021"
  scale_equivariant = True
  selects = True

  def _check(self, n: int, f: int) -> None:
    if n <= 2 * f:
      raise ValueError(f"cge needs n > 2f, got n={n}, f={f}")

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int) -> tuple[tf.Tensor, tf.Tensor]:
    n = gradients.shape[0]
    kept = ops.indices_of_smallest(ops.squared_norms(gradients), n - f)
    aggregated = tf.reduce_mean(tf.gather(gradients, kept), axis=0)
    return aggregated, ops.selection_mask(kept, n, gradients.dtype)
