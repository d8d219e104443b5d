"""Reversed, amplified honest mean."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


@attacks.register
class Reverse(attacks.Attack):
  """Every Byzantine gradient is -factor * mean(honest): the honest direction, reversed and scaled up.

  A large, easily spotted attack that defeats plain averaging: with f >= 1 and
  factor > n - f, the mean of all n gradients points against the honest mean.
  Corrupted gradients of this kind are the baseline attacks of the original
  AggregaThor (Damaskinos, El-Mhamdi, Guerraoui, Guirguis, Rouault,
  "AggregaThor: Byzantine Machine Learning via Robust Gradient Aggregation",
  SysML 2019) and of El-Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability
  of Distributed Learning in Byzantium", ICML 2018. Any n and f.

  Args:
    factor: the amplification, a finite number > 0 (default 100).
  """

  name = "reverse"
  reference = "Damaskinos et al., SysML 2019; El-Mhamdi et al., ICML 2018"
  params = {"factor": 100.0}

  def check(self, n: int, f_real: int, f_decl: int, factor: float) -> None:
    _common.check_number(self.name, "factor", factor, minimum=0, strict=True)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, factor: float) -> tf.Tensor:
    return _common.repeat(tf.constant(-factor, honest.dtype) * _common.honest_mean(honest), f_real)
