"""Bulyan."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops
from aggregathor.gars.krum import krum_upper_bound


@gars.register
class Bulyan(gars.Rule):
  """Bulyan: theta successive Krum selections, then a coordinate-wise trimmed median.

  El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
  Learning in Byzantium", ICML 2018. Krum (Blanchard et al., NeurIPS 2017) picks
  theta = n-2f gradients one at a time, each pick leaving the pool; on a pool of
  p gradients a score sums the squared distances to the p-f-2 closest others
  (none once p-f-2 <= 0). Then, per coordinate, the output is the mean of the
  beta = theta-2f selected values closest to their median (of two equally far,
  the smaller). Needs n >= 4f + 3.
  A gradient with a non-finite coordinate is at +inf from all, so it is picked
  only after every finite-score gradient. Tied Krum scores, which always occur
  in the last picks when f <= 2 (p-f-2 is then 1 or 0), go to the gradient with
  the smaller sum of squared distances to the whole pool (first the fewer
  infinite ones, then the smaller sum of the finite ones), so that the output
  does not depend on the order of the workers.
  """

  name = "bulyan"
  reference = "El Mhamdi et al., ICML 2018"
  selects = True

  def _check(self, n: int, f: int) -> None:
    if n < 4 * f + 3:
      raise ValueError(f"bulyan needs n >= 4f+3, got n={n}, f={f}")

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    # The Krum bound on the initial pool, as in AggregaThor.
    del d
    return krum_upper_bound(n, f)

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int) -> tuple[tf.Tensor, tf.Tensor]:
    n = gradients.shape[0]
    dtype = gradients.dtype
    theta = n - 2 * f
    # One Gram product for all selections; a removed gradient's column is masked out.
    distances = ops.pairwise_squared_distances(gradients)
    picks = (_compiled_krum_picks if n <= KRUM_PICKS_COMPILE_MAX_ROWS else _krum_picks)(distances, f, theta)
    beta = theta - 2 * f
    aggregated = _mean_around_median(gradients, picks, beta, tf.constant(beta, dtype))
    return aggregated, ops.selection_mask(picks, n, dtype)


def _krum_picks(distances: tf.Tensor, f: int, theta: int) -> tf.Tensor:
  """The theta successive Krum picks on the (n, n) squared distances, as a (theta,) int32 tensor."""
  n, dtype = distances.shape[0], distances.dtype
  inf = tf.constant(np.inf, dtype)
  # Taking the elementwise minimum with the transpose makes the matrix exactly symmetric, so that tied
  # scores (below) compare equal whatever the round-off of the product.
  distances = tf.minimum(distances, tf.transpose(distances))
  off_diagonal = tf.linalg.set_diag(distances, tf.fill([n], inf))
  workers = tf.range(n, dtype=tf.int32)
  removed = tf.zeros([n], tf.bool)
  picks = []
  for pool in range(n, n - theta, -1):  # unrolled over the theta selections, not over coordinates
    scores = ops.sum_of_smallest(tf.where(removed[None, :], inf, off_diagonal), pool - f - 2)
    # Removed gradients rank past every remaining one, even one whose score is +inf.
    keys = tf.where(removed, inf, tf.minimum(scores, dtype.max))
    # Ties are structural in the last picks when f <= 2: with one neighbour the closest pair tie,
    # with none all do. The smaller total squared distance to the pool breaks them, so that the
    # choice does not depend on the workers' order (the lower index only breaks exact ties of both).
    # A non-finite gradient in the pool makes every total +inf, so the totals leave out the
    # infinite distances and first compare their number (the non-finite gradient has the most).
    pool_distances = tf.where(removed[None, :], tf.zeros_like(distances), distances)
    infinite = tf.math.is_inf(pool_distances)
    counts = tf.reduce_sum(tf.cast(infinite, tf.int32), axis=1)
    totals = tf.reduce_sum(tf.where(infinite, tf.zeros_like(distances), pool_distances), axis=1)
    best = tf.equal(keys, tf.reduce_min(keys))
    best = tf.logical_and(best, tf.equal(counts, tf.reduce_min(tf.where(best, counts, n))))
    best = tf.logical_and(best, tf.equal(totals, tf.reduce_min(tf.where(best, totals, inf))))
    # The lowest index among them; not tf.argmin, which on the CPU passes over values >= dtype.max.
    pick = tf.reduce_min(tf.where(best, workers, n))
    picks.append(pick)
    removed = tf.logical_or(removed, tf.equal(workers, pick))
  return tf.stack(picks)


# Up to 64 workers the picks are one XLA computation: their theta unrolled selections of a dozen
# small (n, n) ops each cost more in op launches than in arithmetic (n=32: 0.7 ms against 1.5 ms).
# Past it, XLA:CPU's top-k is the slower (n=128: 39 ms against 27 ms).
KRUM_PICKS_COMPILE_MAX_ROWS = 64
_compiled_krum_picks = tf.function(_krum_picks, jit_compile=True, autograph=False)


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _mean_around_median(gradients: tf.Tensor, picks: tf.Tensor, beta: int, count: tf.Tensor) -> tf.Tensor:
  """Per coordinate, the mean of the beta picked values closest to their median (one pass under XLA)."""
  sorted_list = ops.sort_rows(ops.rows_at(gradients, picks))
  median = ops.median_of_rows(sorted_list)
  return ops.sum_of_closest_rows(sorted_list, median, beta) / count
