"""Geometric median by smoothed Weiszfeld iterations (RFA)."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class GeometricMedian(gars.Rule):
  """Approximate geometric median: the point minimising the sum of L2 distances to the gradients.

  Smoothed Weiszfeld algorithm of RFA: Pillutla, Kakade, Harchaoui, "Robust
  Aggregation for Federated Learning", IEEE Transactions on Signal Processing,
  2022, arXiv:1912.13445. Each iteration sets

      beta_i = alpha_i / max(smoothing, ||v - x_i||),   v <- sum_i beta_i x_i / sum_i beta_i

  with uniform weights alpha_i. It starts from the coordinate-wise median (RFA
  starts from the mean, which one huge Byzantine vector can throw arbitrarily
  far; the minimiser is the same) and stops after `iterations` steps, or once
  the objective sum_i alpha_i ||v - x_i|| changes by at most `tolerance` times
  its value. `smoothing` (ν in the paper) keeps the weights bounded when v
  lands on a gradient. Breakdown point 1/2: needs n >= 2f + 1.

  A row holding NaN or ±inf gets weight zero (and is zeroed before any product,
  so it cannot poison the sum). A finite row whose distance to v overflows the
  dtype also gets weight zero: its exact weight would be below 1/max.
  """

  name = "geometric-median"
  reference = "Pillutla, Kakade, Harchaoui, IEEE TSP 2022, arXiv:1912.13445 (RFA)"
  params = {"iterations": 100, "tolerance": 1e-6, "smoothing": 1e-6}

  def _check(self, n: int, f: int, iterations: int, tolerance: float, smoothing: float) -> None:
    gars.check_positive_int(self.name, "iterations", iterations)
    gars.check_positive_float(self.name, "tolerance", tolerance, allow_zero=True)
    gars.check_positive_float(self.name, "smoothing", smoothing)
    if n < 2 * f + 1:
      raise ValueError(f"geometric-median needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int, iterations: int, tolerance: float,
                 smoothing: float) -> tf.Tensor:
    dtype = gradients.dtype
    finite = ops.finite_rows(gradients)
    points = tf.where(finite[:, None], gradients, tf.zeros_like(gradients))
    alphas = tf.cast(finite, dtype)
    smoothing = tf.constant(smoothing, dtype)
    tolerance = tf.constant(tolerance, dtype)

    def distances(center: tf.Tensor) -> tf.Tensor:
      return ops.row_norms(points - center[None])

    def objective(dists: tf.Tensor) -> tf.Tensor:
      # Overflowed (+inf) distances carry zero weight, so they are left out here too.
      counted = tf.logical_and(finite, tf.math.is_finite(dists))
      return tf.reduce_sum(tf.where(counted, dists, tf.zeros_like(dists)))

    def body(step, center, dists, value, done):
      betas = alphas / tf.maximum(smoothing, dists)  # +inf distance -> weight 0
      total = tf.reduce_sum(betas)
      moved = tf.linalg.matvec(points, betas, transpose_a=True) / total
      # No point with a usable weight: stay put rather than divide by zero.
      center = tf.where(total > 0, moved, center)
      dists = distances(center)
      new_value = objective(dists)
      done = tf.abs(value - new_value) <= tolerance * new_value
      return step + 1, center, dists, new_value, done

    def cond(step, center, dists, value, done):
      del center, dists, value
      return tf.logical_and(step < iterations, tf.logical_not(done))

    start = ops.median_of_sorted(ops.sort_coordinates(gradients))
    start_dists = distances(start)
    _, center, _, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), start, start_dists, objective(start_dists), tf.constant(False)))
    return center
