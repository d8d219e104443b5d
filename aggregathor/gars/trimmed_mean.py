"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


def trimmed_mean_of_sorted(sorted_gradients: tf.Tensor, b: int) -> tf.Tensor:
  """Per coordinate, the mean of column-sorted rows without the b smallest and b largest."""
  n = sorted_gradients.shape[0]
  return tf.reduce_mean(sorted_gradients[b:n - b], axis=0)


@gars.register
class TrimmedMean(gars.Rule):
  """Per coordinate, drops the f largest and the f smallest values and averages the n-2f others.

  Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
  Towards Optimal Statistical Rates", ICML 2018 (the β-trimmed mean, with
  β = f/n). Needs n >= 2f + 1. NaN and ±inf sort past every finite value, so
  up to f of them per coordinate are among the dropped ones and the output
  stays finite.
  """

  name = "trimmed-mean"
  reference = "Yin et al., ICML 2018, arXiv:1803.01498"
  scale_equivariant = True

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"trimmed-mean needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    n = gradients.shape[0]
    return _trimmed_mean(gradients, f, tf.constant(n - 2 * f, gradients.dtype))


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _trimmed_mean(gradients: tf.Tensor, f: int, count: tf.Tensor) -> tf.Tensor:
  # count = n - 2f, a tensor (see ops.fused); under XLA one pass over the gradients.
  sorted_list = ops.sorted_rows(gradients)
  return ops.sum_of_rows(sorted_list[f:len(sorted_list) - f]) / count
