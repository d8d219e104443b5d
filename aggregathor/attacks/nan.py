"""Not-a-number gradients."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import attacks


@attacks.register
class NaN(attacks.Attack):
  """Every Byzantine gradient is all NaN: a crash-like or buggy worker.

  Tests that a rule treats non-finite inputs as outliers (El-Mhamdi, Guerraoui,
  Rouault, "The Hidden Vulnerability of Distributed Learning in Byzantium",
  ICML 2018, discusses such degenerate inputs). Any n and f.
  """

  name = "nan"
  reference = "El-Mhamdi et al., ICML 2018 (degenerate inputs)"

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object) -> tf.Tensor:
    return tf.fill([f_real, honest.shape[1]], tf.constant(math.nan, honest.dtype))
