"""Bulyan."""

from __future__ import annotations

import functools

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
  scale_equivariant = True
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
    # One Gram product (oneDNN) for all selections, the distances taken from it inside the picks' XLA computation.
    picks = _krum_picks_from_gram(tf.matmul(gradients, gradients, transpose_b=True), f, theta)
    beta = theta - 2 * f
    aggregated = _mean_around_median(gradients, picks, beta, tf.constant(beta, dtype))
    return aggregated, ops.selection_mask(picks, n, dtype)


def krum_picks(distances: tf.Tensor, f: int, theta: int) -> tf.Tensor:
  """The theta successive Krum picks on the (n, n) squared distances, as a (theta,) int32 tensor.

  Each row's distances to the others are sorted once. A row's score on a pool
  of p workers sums its k = p-f-2 closest neighbours still in the pool: the
  first k live entries of its sorted row, a window that ends at a boundary
  position. When a pick leaves the pool and k drops by one, each window either
  loses the pick (the boundary stays) or, if the pick lay past it, its own last
  entry (the boundary moves back to it), so every pick costs a few passes over
  the (n, n-1) sorted distances, O(n^2 log n + theta n^2) in all, where
  re-selecting the k smallest of each row at every pick costs a top-k per pick.
  The scores are summed afresh at each pick, never updated by subtraction,
  so that a tie is a tie. Bulyan runs it as one XLA computation, with no
  branch: the tie-break is computed at every pick, and the loop's trip count,
  theta, is fixed, so that on a GPU no pick waits for the host to test a
  predicate.
  """
  n, dtype = distances.shape[0], distances.dtype
  inf = tf.constant(np.inf, dtype)
  # Taking the elementwise minimum with the transpose makes the matrix exactly symmetric, so that tied
  # scores (below) compare equal whatever the round-off of the product.
  distances = tf.minimum(distances, tf.transpose(distances))
  others = tf.constant([[j for j in range(n) if j != i] for i in range(n)], tf.int32)  # (n, n-1)
  to_others = tf.gather(distances, others, batch_dims=1)
  order = tf.argsort(to_others, axis=1, stable=True)
  neighbours = tf.gather(others, order, batch_dims=1)  # (n, n-1): worker i's t-th closest other
  # Laid out (n-1, n), worker i's sorted distances down column i: XLA:CPU reduces across rows at about 4x
  # the speed of along them.
  sorted_distances = tf.transpose(tf.gather(to_others, order, batch_dims=1))
  workers = tf.range(n, dtype=tf.int32)
  positions = tf.range(n - 1, dtype=tf.int32)[:, None]
  # place[i, j]: the position of worker j in worker i's sorted distances (n-1, past them all, for j = i).
  place = tf.tensor_scatter_nd_update(
      tf.fill([n, n], n - 1), tf.stack([tf.broadcast_to(workers[:, None], [n, n - 1]), neighbours], axis=-1),
      tf.broadcast_to(tf.transpose(positions), [n, n - 1]))
  infinite = tf.math.is_inf(sorted_distances)
  zeros = tf.zeros_like(sorted_distances)
  # Infinite distances are counted (exactly: sums of ones below n), and left out of the totals.
  layers = tf.concat([sorted_distances, tf.where(infinite, zeros, sorted_distances), tf.cast(infinite, dtype)],
                     axis=1)

  def lowest_worker(best: tf.Tensor) -> tf.Tensor:
    # The lowest index among them; not tf.argmin, which on the CPU passes over values >= dtype.max.
    return tf.reduce_min(tf.where(best, workers, n))

  def tie_break(best: tf.Tensor, counts: tf.Tensor, totals: tf.Tensor) -> tf.Tensor:
    # Ties are structural in the last picks when f <= 2: with one neighbour the closest pair tie,
    # with none all do. The smaller total squared distance to the pool breaks them, so that the
    # choice does not depend on the workers' order (the lower index only breaks exact ties of both).
    # A non-finite gradient in the pool makes every total +inf, so the totals leave out the
    # infinite distances and first compare their number (the non-finite gradient has the most).
    best = tf.logical_and(best, tf.equal(counts, tf.reduce_min(tf.where(best, counts, inf))))
    best = tf.logical_and(best, tf.equal(totals, tf.reduce_min(tf.where(best, totals, inf))))
    return lowest_worker(best)

  def pick_one(step, live, boundary, removed, picks):
    window = tf.logical_and(live, positions < boundary[None, :])
    # The window's scores, and the pool's finite totals and infinite counts for the tie-break, in one reduction.
    sums = tf.reduce_sum(tf.where(tf.concat([window, live, live], axis=1), layers, tf.zeros_like(layers)), axis=0)
    scores, totals, counts = sums[:n], sums[n:2 * n], sums[2 * n:]
    last_in_window = tf.reduce_max(tf.where(window, positions, -1), axis=0)
    # Removed gradients rank past every remaining one, even one whose score is +inf.
    keys = tf.where(removed, inf, tf.minimum(scores, dtype.max))
    best = tf.equal(keys, tf.reduce_min(keys))
    # The tie-break runs on every pick, a tie or not: a branch would make a GPU stop for the host to test it.
    pick = tie_break(best, counts, totals)
    place_of_pick = tf.gather(place, pick, axis=1)
    boundary = tf.where(place_of_pick < boundary, boundary, last_in_window)
    # The pick's own column has no entry for it: its (n-1)-th place is clamped onto its last, unused since.
    live = tf.tensor_scatter_nd_update(live, tf.stack([tf.minimum(place_of_pick, n - 2), workers], axis=1),
                                       tf.zeros([n], tf.bool))
    removed = tf.logical_or(removed, tf.equal(workers, pick))
    picks = tf.tensor_scatter_nd_update(picks, [[step]], [pick])
    return step + 1, live, boundary, removed, picks

  first_window = min(max(n - f - 2, 0), n - 1)
  state = (tf.constant(0), tf.ones([n - 1, n], tf.bool), tf.fill([n], first_window), tf.zeros([n], tf.bool),
           tf.zeros([theta], tf.int32))
  return tf.while_loop(lambda step, *_: step < theta, pick_one, state)[-1]


@functools.partial(tf.function, jit_compile=True, autograph=False)
def _krum_picks_from_gram(gram: tf.Tensor, f: int, theta: int) -> tf.Tensor:
  return krum_picks(ops.squared_distances_from_gram(gram), f, theta)


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _mean_around_median(gradients: tf.Tensor, picks: tf.Tensor, beta: int, count: tf.Tensor) -> tf.Tensor:
  """Per coordinate, the mean of the beta picked values closest to their median (one pass under XLA)."""
  sorted_list = ops.sort_rows(ops.rows_at(gradients, picks))
  median = ops.median_of_rows(sorted_list)
  return ops.sum_of_closest_rows(sorted_list, median, beta) / count
