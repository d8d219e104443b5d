"""Arithmetic mean of the finite values."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class AverageNaN(gars.Rule):
  """Per coordinate, the arithmetic mean of the finite values; NaN and ±inf are left out.

  The "average-nan" rule of AggregaThor (Damaskinos, El Mhamdi, Guerraoui,
  Guirguis, Rouault, "AggregaThor: Byzantine Machine Learning via Robust
  Gradient Aggregation", SysML 2019), meant for workers that crash or send
  corrupted (non-finite) coordinates. It only filters non-finite values: one
  Byzantine worker sending large finite values still moves the output
  arbitrarily far, hence `robust = False`. A coordinate with no finite value
  at all is NaN in the output. The sum of finite values may itself overflow
  to ±inf. Any n >= 1 and f >= 0 are accepted (f is not used).
  """

  name = "average-nan"
  reference = "Damaskinos et al., SysML 2019 (AggregaThor)"
  scale_equivariant = True
  robust = False

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    return _average_nan(gradients)


@ops.fused
def _average_nan(gradients: tf.Tensor) -> tf.Tensor:
  total = ops.column_sums(lambda x: tf.where(tf.math.is_finite(x), x, tf.zeros_like(x)), gradients)
  count = ops.column_sums(lambda x: tf.cast(tf.math.is_finite(x), x.dtype), gradients)
  # Said explicitly rather than left to 0/0.
  return tf.where(count > 0, total / tf.maximum(count, 1), tf.constant(np.nan, gradients.dtype))
