"""Geometric median by smoothed Weiszfeld iterations (RFA)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops


def _hypot(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """sqrt(x² + y²) without overflow in the squares."""
  largest = tf.maximum(tf.abs(x), tf.abs(y))
  scale = tf.where(largest > 0, largest, tf.ones_like(largest))
  return largest * tf.sqrt(tf.square(x / scale) + tf.square(y / scale))


# How much more rounding the centered Gram product derived from the plain one may carry than one
# computed from the centered gradients: a factor 8 on squared distances, under 2 bits of a float.
DERIVED_AMPLIFICATION = 8.0


@gars.register
class GeometricMedian(gars.Rule):
  """Approximate geometric median: the point minimising the sum of L2 distances to the gradients.

  Smoothed Weiszfeld algorithm of RFA: Pillutla, Kakade, Harchaoui, "Robust
  Aggregation for Federated Learning", IEEE Transactions on Signal Processing,
  2022, arXiv:1912.13445. Each iteration sets

      beta_i = alpha_i / max(smoothing, ||v - x_i||),   v <- sum_i beta_i x_i / sum_i beta_i

  with uniform weights alpha_i, for at most `iterations` steps, stopping early
  once a step moves v by at most `tolerance` times the median distance from v
  to the gradients (RFA tests the relative change of the objective instead,
  which f far-away Byzantine gradients dominate). `smoothing` (ν in the paper)
  keeps the weights bounded when v comes close to a gradient. Breakdown
  point 1/2: needs n >= 2f + 1.

  How it is computed: v stays a convex combination of the gradients, so the
  iterations run on the n weights alone. One Gram product of the gradients
  picks an anchor (the gradient whose n-f nearest gradients are closest) and
  the start (the mean of those n-f; RFA starts from the mean of all, which one
  huge Byzantine gradient throws arbitrarily far). The Gram product of the
  gradients centered on the anchor, scaled to unit norm, gives every distance
  ||v - x_i|| in O(n²), so an iteration never reads the (n, d) matrix. That
  centered product is derived from the first one, <x_i - o, x_j - o> =
  <x_i, x_j> - <x_i, o> - <x_j, o> + <o, o>, when the cancellation costs little:
  when no (|x_i| + |o|)² exceeds DERIVED_AMPLIFICATION times the larger of
  ||x_i - o||² and the median of those (the gradients' spread). Otherwise
  (gradients far from the origin against their spread, as early in training)
  it is computed from the centered gradients, a second pass. So the rule costs
  one or two Gram products and one weighted sum of the rows (a pass to find
  non-finite rows, and one more product, only when there are some). Either
  way the distances are accurate to rounding relative to the gradients'
  spread (within DERIVED_AMPLIFICATION), except for a distance far below that
  spread (v about to land on a gradient), which is only
  accurate to about sqrt(eps) times the spread (3e-4 in float32).

  A row holding NaN or ±inf gets weight zero and is zeroed before any
  product that is kept (the first Gram product is then redone), so it cannot
  poison the output. So does a finite row whose distance to the anchor
  overflows the dtype (its exact weight would be below 1/max). With no usable row at all, the output is NaN.
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
    n, dtype = gradients.shape[0], gradients.dtype
    inf = tf.constant(np.inf, dtype)
    # A row holding NaN or ±inf has a non-finite squared norm, so a finite diagonal of the Gram
    # product vouches for every row without a pass of its own; else the rows are checked, the bad ones
    # zeroed, and the product redone.
    plain_gram = tf.matmul(gradients, gradients, transpose_b=True)

    def zeroed() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
      finite = ops.finite_rows(gradients)
      points = tf.math.multiply_no_nan(gradients, tf.cast(finite, dtype)[:, None])
      return points, tf.matmul(points, points, transpose_b=True), finite

    points, gram, finite = tf.cond(tf.reduce_all(tf.math.is_finite(tf.linalg.diag_part(plain_gram))),
                                   lambda: (gradients, plain_gram, tf.ones([n], tf.bool)), zeroed)

    # Anchor and start, from rough (uncentered) distances: they only need to be robust.
    both_finite = tf.logical_and(finite[:, None], finite[None, :])
    rough = tf.where(both_finite, ops.squared_distances_from_gram(gram), inf)
    anchor = tf.argmin(ops.sum_of_smallest(rough, n - f), output_type=tf.int32)
    nearest = ops.indices_of_smallest(tf.gather(rough, anchor), n - f)
    origin = tf.gather(points, anchor)

    def inverses(norms: tf.Tensor) -> tf.Tensor:
      positive = norms > 0
      return tf.where(positive, 1 / tf.where(positive, norms, tf.ones_like(norms)), tf.zeros_like(norms))

    def unit(centered: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
      norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(centered), 0))
      scales = inverses(norms)
      return centered * scales[:, None] * scales[None, :], norms

    # Centered on the anchor: accurate distances however far they all are from the origin.
    to_anchor = tf.gather(gram, anchor)
    derived = gram - to_anchor[:, None] - to_anchor[None, :] + to_anchor[anchor]
    spreads = tf.linalg.diag_part(derived)
    median_spread = tf.sort(tf.where(finite, spreads, inf))[
        tf.maximum(tf.reduce_sum(tf.cast(finite, tf.int32)) - 1, 0) // 2]
    squares = tf.maximum(tf.linalg.diag_part(gram), 0)
    magnitudes = tf.square(tf.sqrt(squares) + tf.sqrt(squares[anchor]))
    cheap = tf.logical_and(
        tf.reduce_all(tf.math.is_finite(gram)),
        tf.reduce_all(magnitudes <= DERIVED_AMPLIFICATION * tf.maximum(spreads, median_spread)))

    # Each way gives the unit Gram product, the distances to the anchor, the rows and their scales for the
    # output (origin + sum_i w_i scale_i row_i, less (sum_i w_i) origin where the rows are the points), and
    # which rows are usable.
    def from_derived():
      unit_gram, norms = unit(derived)
      return unit_gram, norms, points, tf.ones_like(norms), tf.ones_like(finite), tf.constant(False)

    def from_offsets():
      offsets = points - origin[None]
      centered = tf.matmul(offsets, offsets, transpose_b=True)

      def from_centered():
        unit_gram, norms = unit(centered)
        return unit_gram, norms, offsets, tf.ones_like(norms), tf.ones_like(finite), tf.constant(True)

      def from_units():
        # A huge row overflowed the products: redo them on rows scaled to unit norm.
        norms = ops.row_norms(offsets)
        kept = tf.math.is_finite(norms)
        norms = tf.where(kept, norms, tf.zeros_like(norms))
        # Divided, not multiplied by 1/norm, which would flush to zero near the dtype's max;
        # 0 for overflowed rows.
        units = tf.math.divide_no_nan(offsets, norms[:, None])
        return tf.matmul(units, units, transpose_b=True), norms, units, norms, kept, tf.constant(True)

      return tf.cond(tf.reduce_all(tf.math.is_finite(centered)), from_centered, from_units)

    gram, norms, rows, row_scales, kept, offset_rows = tf.cond(cheap, from_derived, from_offsets)
    usable = tf.logical_and(finite, kept)
    alphas = tf.cast(usable, dtype)
    smoothing = tf.constant(smoothing, dtype)
    tolerance = tf.constant(tolerance, dtype)

    def distances(weights: tf.Tensor) -> tf.Tensor:
      # v - origin = sum_j a_j u_j; split v - x_i along u_i and across it.
      coefficients = weights * norms
      projections = tf.linalg.matvec(gram, coefficients)
      squared_norm = tf.reduce_sum(coefficients * projections)
      across = tf.sqrt(tf.maximum(squared_norm - tf.square(projections), 0))
      return _hypot(norms - projections, across)

    def median_distance(dists: tf.Tensor) -> tf.Tensor:
      return tf.sort(tf.where(usable, dists, tf.fill([n], inf)))[(n - 1) // 2]

    def body(step, weights, dists, done):
      betas = alphas / tf.maximum(smoothing, dists)  # +inf distance -> weight 0
      total = tf.reduce_sum(betas)
      # No usable row: stay put rather than divide by zero.
      moved = tf.where(total > 0, betas / tf.where(total > 0, total, 1), weights)
      dists = distances(moved)
      shift = (moved - weights) * norms
      shift = tf.sqrt(tf.maximum(tf.reduce_sum(shift * tf.linalg.matvec(gram, shift)), 0))
      done = shift <= tolerance * median_distance(dists)
      return step + 1, moved, dists, done

    def cond(step, weights, dists, done):
      del weights, dists
      return tf.logical_and(step < iterations, tf.logical_not(done))

    start = ops.selection_mask(nearest, n, dtype) * alphas
    start = start / tf.maximum(tf.reduce_sum(start), 1)
    _, weights, _, _ = tf.while_loop(cond, body, (tf.constant(0), start, distances(start), tf.constant(False)))
    origin_weight = tf.where(offset_rows, tf.ones([], dtype), 1 - tf.reduce_sum(weights))
    center = origin_weight * origin + tf.linalg.matvec(rows, weights * row_scales, transpose_a=True)
    return tf.where(tf.reduce_any(usable), center, tf.fill(tf.shape(center), tf.constant(np.nan, dtype)))
