"""Arithmetic mean of the finite values."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars


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
  robust = False

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    finite = tf.math.is_finite(gradients)
    total = tf.reduce_sum(tf.where(finite, gradients, tf.zeros_like(gradients)), axis=0)
    count = tf.reduce_sum(tf.cast(finite, gradients.dtype), axis=0)
    # Said explicitly rather than left to 0/0.
    return tf.where(count > 0, total / tf.maximum(count, 1), tf.constant(np.nan, gradients.dtype))
