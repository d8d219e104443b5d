"""Arithmetic mean: the non-robust baseline."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import gars


@gars.register
class Average(gars.Rule):
  """Coordinate-wise arithmetic mean of the n gradients.

  The rule of plain synchronous SGD (e.g. Bottou, "Large-Scale Machine Learning
  with Stochastic Gradient Descent", COMPSTAT 2010). Not robust: one Byzantine
  gradient moves it arbitrarily, and a NaN or ±inf coordinate propagates to the
  output. Any n >= 1 and f >= 0 are accepted.
  """

  name = "average"
  reference = "Bottou, COMPSTAT 2010 (plain synchronous SGD)"
  scale_equivariant = True
  robust = False

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    del d
    return 1 / math.sqrt(n) if f == 0 else None

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    return tf.reduce_mean(gradients, axis=0)
