"""Phocas."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops
from aggregathor.gars.trimmed_mean import trimmed_mean_of_sorted


@gars.register
class Phocas(gars.Rule):
  """Per coordinate, the mean of the n-f values closest to the f-trimmed mean.

  Xie, Koyejo, Gupta, "Phocas: dimensional Byzantine-resilient stochastic
  gradient descent", arXiv:1805.09682, 2018, with trimming b = f (the trimmed
  mean drops the f largest and f smallest values per coordinate). Needs
  n >= 2f + 1. NaN and ±inf sort past every finite value: with at most f of
  them per coordinate the trimmed mean is finite and they are never among the
  n-f values averaged, so the output stays finite.
  """

  name = "phocas"
  reference = "Xie, Koyejo, Gupta, arXiv:1805.09682, 2018"

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"phocas needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    n = gradients.shape[0]
    sorted_gradients = ops.sort_coordinates(gradients)  # one sort, for the trimmed mean and the window
    center = trimmed_mean_of_sorted(sorted_gradients, f)
    return ops.mean_of_closest_sorted(sorted_gradients, center, n - f)
