"""Krum."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import gars, ops


def krum_scores(distances: tf.Tensor, f: int) -> tf.Tensor:
  """Krum scores from (n, n) squared distances: the sum of each row's n-f-2 smallest off-diagonal entries."""
  n = distances.shape[0]
  off_diagonal = tf.linalg.set_diag(distances, tf.fill([n], tf.constant(math.inf, distances.dtype)))
  return ops.sum_of_smallest(off_diagonal, n - f - 2)


def krum_upper_bound(n: int, f: int) -> float:
  """Blanchard et al.'s bound on the honest std/norm ratio (the η(n, f) condition), as in AggregaThor."""
  return 1 / math.sqrt(2 * (n - f + f * (n + f * (n - f - 2) - 2) / (n - 2 * f - 2)))


@gars.register
class Krum(gars.Rule):
  """Krum: outputs the gradient with the lowest score.

  Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
  Byzantine Tolerant Gradient Descent", NeurIPS 2017. The score of a gradient is
  the sum of its squared L2 distances to its n-f-2 closest other gradients.
  Needs n >= 2f + 3. A gradient with a non-finite coordinate is at +inf from all.
  """

  name = "krum"
  reference = "Blanchard et al., NeurIPS 2017"
  scale_equivariant = True
  selects = True

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 3:
      raise ValueError(f"krum needs n >= 2f+3, got n={n}, f={f}")

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    del d
    return krum_upper_bound(n, f)

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int) -> tuple[tf.Tensor, tf.Tensor]:
    n = gradients.shape[0]
    scores = krum_scores(ops.pairwise_squared_distances(gradients), f)
    best = tf.argmin(scores, output_type=tf.int32)
    return tf.gather(gradients, best), tf.one_hot(best, n, dtype=gradients.dtype)
