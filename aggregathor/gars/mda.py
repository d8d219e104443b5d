"""Minimum-diameter averaging (MDA)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops


def excluded_subsets(n: int, f: int) -> np.ndarray:
  """(C(n, f), n) bool: row c is True at the n-f workers kept by the c-th subset."""
  excluded = np.array(list(itertools.combinations(range(n), f)), dtype=np.int64).reshape(math.comb(n, f), f)
  members = np.ones((excluded.shape[0], n), dtype=bool)
  np.put_along_axis(members, excluded, False, axis=1)
  return members


@gars.register
class MDA(gars.Rule):
  """MDA: the mean of the n-f gradients whose subset has the smallest diameter.

  El Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient
  Stochastic Gradient Descent", ICLR 2021; the estimator goes back to Rousseeuw's
  minimum volume ellipsoid ("Multivariate Estimation with High Breakdown Point",
  1985). The diameter of a subset is its largest pairwise L2 distance. Needs
  n > 2f. The search is exact over all C(n, f) subsets, costing about
  C(n, f) * n^2 operations; check() refuses more than `max_subsets` subsets.
  A subset holding a gradient with a non-finite coordinate has an infinite
  diameter. Diameters tie whenever two subsets keep the same farthest pair
  (often); the tie goes to the subset with the smaller sum of squared pairwise
  distances, so that the output does not depend on the order of the workers.
  """

  name = "mda"
  reference = "El Mhamdi et al., ICLR 2021; Rousseeuw 1985"
  scale_equivariant = True
  params = {"max_subsets": 200_000}
  selects = True

  def _check(self, n: int, f: int, max_subsets: int) -> None:
    if n <= 2 * f:
      raise ValueError(f"mda needs n > 2f, got n={n}, f={f}")
    gars.check_positive_int(self.name, "max_subsets", max_subsets)
    count = math.comb(n, f)
    if count > max_subsets:
      raise ValueError(f"mda would search all C(n, f) = C({n}, {f}) = {count} subsets, more than max_subsets="
                       f"{max_subsets}; pass max_subsets={count} (or more) to allow it, at a cost of about "
                       f"{count * n * n:.1e} operations per aggregation, or use a smaller f")

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    # As in the authors' implementation (LPD-EPFL/ByzantineMomentum); no bound is stated for f = 0.
    del d
    return (n - f) / (math.sqrt(8) * f) if f > 0 else None

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int, max_subsets: int) -> tuple[tf.Tensor, tf.Tensor]:
    del max_subsets  # enforced by check()
    n = gradients.shape[0]
    dtype = gradients.dtype
    # The diameter ranks like its square, so the squared distances of one Gram product do.
    distances = ops.pairwise_squared_distances(gradients)
    members = tf.constant(excluded_subsets(n, f))
    zero = tf.zeros([], dtype)
    finite = tf.where(tf.math.is_finite(distances), distances, zero)
    diameters = tf.zeros([members.shape[0]], dtype)
    spreads = tf.zeros([members.shape[0]], dtype)
    for i in range(n):  # over workers: the farthest member from worker i, in every subset holding i
      in_subset = members[:, i]
      farthest = tf.reduce_max(tf.where(members, distances[i][None, :], zero), axis=1)
      diameters = tf.maximum(diameters, tf.where(in_subset, farthest, zero))
      spreads += tf.where(in_subset, tf.reduce_sum(tf.where(members, finite[i][None, :], zero), axis=1), zero)
    # Diameters tie whenever two subsets keep the same farthest pair, which is common; the smaller
    # sum of squared distances within the subset breaks the tie independently of the workers' order.
    tied = tf.equal(diameters, tf.reduce_min(diameters))
    best = tf.argmin(tf.where(tied, spreads, tf.constant(np.inf, dtype)), output_type=tf.int32)
    kept = tf.gather(members, best)
    # A masked sum rather than a matmul, so that a NaN outside the subset stays out.
    aggregated = tf.reduce_sum(tf.where(kept[:, None], gradients, tf.zeros_like(gradients)), axis=0) / (n - f)
    return aggregated, tf.cast(kept, dtype)
