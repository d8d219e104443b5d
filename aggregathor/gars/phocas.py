"""Phocas."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class Phocas(gars.Rule):
  """Per coordinate, the mean of the n-f values closest to the f-trimmed mean.

  Xie, Koyejo, Gupta, "Phocas: dimensional Byzantine-resilient stochastic
  gradient descent", arXiv:1805.09682, 2018, with trimming b = f (the trimmed
  mean drops the f largest and f smallest values per coordinate); of two values
  equally far from it, the smaller one is kept (see `ops.sum_of_closest_rows`).
  Needs n >= 2f + 1. NaN and ±inf sort past every finite value: with at most f of
  them per coordinate the trimmed mean is finite and they are never among the
  n-f values averaged, so the output stays finite.
  """

  name = "phocas"
  reference = "Xie, Koyejo, Gupta, arXiv:1805.09682, 2018"
  scale_equivariant = True

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"phocas needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    n = gradients.shape[0]
    return _phocas(gradients, f, tf.constant(n - f, gradients.dtype))


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _phocas(gradients: tf.Tensor, f: int, count: tf.Tensor) -> tf.Tensor:
  sorted_list = ops.sorted_rows(gradients)  # one sort, for the trimmed mean and the window
  n = len(sorted_list)
  # The trimmed mean times 1/(n-2f) rather than divided: a quotient feeding every window keeps
  # XLA from fusing the network into one pass (see ops.fused). The product can differ from the
  # quotient by 1 ulp, which changes the window only where two windows' costs are that close.
  center = ops.sum_of_rows(sorted_list[f:n - f]) * (1 / (n - 2 * f))
  return ops.sum_of_closest_rows(sorted_list, center, n - f) / count
