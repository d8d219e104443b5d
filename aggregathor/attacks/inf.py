"""Infinite gradients."""

from __future__ import annotations

import math

import tensorflow as tf

from aggregathor import attacks


@attacks.register
class Inf(attacks.Attack):
  """Every Byzantine gradient is all +inf (all -inf with `negative=True`): an overflowing worker.

  Like `nan`, a degenerate input that a robust rule must treat as an outlier
  (El-Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
  Learning in Byzantium", ICML 2018, discusses such inputs). Any n and f.

  Args:
    negative: send -inf instead of +inf (default False).
  """

  name = "inf"
  reference = "El-Mhamdi et al., ICML 2018 (degenerate inputs)"
  params = {"negative": False}

  def check(self, n: int, f_real: int, f_decl: int, negative: bool) -> None:
    if not isinstance(negative, bool):
      raise ValueError(f"attack inf expects negative as a bool, got {negative!r}")

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, negative: bool) -> tf.Tensor:
    value = -math.inf if negative else math.inf
    return tf.fill([f_real, honest.shape[1]], tf.constant(value, honest.dtype))
