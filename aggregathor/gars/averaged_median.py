"""Averaged median (MeaMed)."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class AveragedMedian(gars.Rule):
  """Per coordinate, the mean of the n-f values closest to the median (MeaMed).

  Xie, Koyejo, Gupta, "Generalized Byzantine-tolerant SGD", arXiv:1802.10116,
  2018. The median is the coordinate-wise one (the mean of the two middle
  values when n is even); of two values equally far from it, the smaller one is
  kept (see `ops.sum_of_closest_rows`). Needs n >= 2f + 1. NaN and ±inf sort past every
  finite value: with at most f of them per coordinate the median is finite and
  they are farther from it than any n-f finite values, so the output stays finite.
  """

  name = "averaged-median"
  reference = "Xie, Koyejo, Gupta, arXiv:1802.10116, 2018 (MeaMed)"
  scale_equivariant = True

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"averaged-median needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    n = gradients.shape[0]
    return _averaged_median(gradients, f, tf.constant(n - f, gradients.dtype))


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _averaged_median(gradients: tf.Tensor, f: int, count: tf.Tensor) -> tf.Tensor:
  sorted_list = ops.sorted_rows(gradients)  # one sort, for the median and the window
  median = ops.median_of_rows(sorted_list)
  return ops.sum_of_closest_rows(sorted_list, median, len(sorted_list) - f) / count
