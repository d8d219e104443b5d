"""Nearest-neighbour mixing (NNM), a pre-aggregation."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class NNM(gars.PreAggregation):
  """NNM: each gradient is replaced by the mean of its n-f nearest neighbours, itself included.

  Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A
  Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023. Needs
  n > 2f. Neighbours are by L2 distance from one Gram product; a gradient with a
  non-finite coordinate is at +inf from all. A mixed row that averages a
  non-finite gradient becomes all NaN, so the rule that follows sees it as
  Byzantine rather than half-valid. Row i of the output no longer stands for
  worker i alone.
  """

  name = "nnm"
  reference = "Allouah et al., AISTATS 2023"
  scale_equivariant = True
  keeps_rows = False

  def _check(self, n: int, f: int) -> None:
    if n <= 2 * f:
      raise ValueError(f"nnm needs n > 2f, got n={n}, f={f}")

  def _transform(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    n = gradients.shape[0]
    dtype = gradients.dtype
    # Each row's own distance is 0, so it is among its n-f nearest (or tied with an identical row).
    neighbours = tf.math.top_k(-ops.pairwise_squared_distances(gradients), k=n - f).indices
    weights = tf.reduce_sum(tf.one_hot(neighbours, n, dtype=dtype), axis=1) / (n - f)  # (n, n), rows sum to 1
    finite = ops.finite_rows(gradients)
    # The (n, n) x (n, d) product would spread one NaN to every row (0 * NaN), so mix the finite rows only
    # and mark the rows that drew a non-finite neighbour.
    mixed = tf.matmul(weights, tf.where(finite[:, None], gradients, tf.zeros_like(gradients)))
    tainted = tf.linalg.matvec(weights, tf.cast(tf.logical_not(finite), dtype)) > 0
    return tf.where(tainted[:, None], tf.constant(np.nan, dtype), mixed)
