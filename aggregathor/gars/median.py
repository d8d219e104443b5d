"""Coordinate-wise median."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class Median(gars.Rule):
  """Coordinate-wise median; the mean of the two middle values when n is even.

  Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
  Towards Optimal Statistical Rates", ICML 2018. Needs n >= 2f + 1. NaN and ±inf
  sort past every finite value, so up to f of them leave the output finite.
  """

  name = "median"
  reference = "Yin et al., ICML 2018, arXiv:1803.01498"
  scale_equivariant = True

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"median needs n >= 2f+1, got n={n}, f={f}")

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    del d
    return 1 / math.sqrt(n - f)

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    return _median(gradients)


@ops.fused(max_rows=ops.SORTING_NETWORK_MAX_ROWS)
def _median(gradients: tf.Tensor) -> tf.Tensor:
  # Under XLA only the comparators leading to the middle rows remain: a selection network.
  return ops.median_of_rows(ops.sorted_rows(gradients))
