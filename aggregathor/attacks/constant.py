"""Constant gradients."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


@attacks.register
class Constant(attacks.Attack):
  """Every coordinate of every Byzantine gradient is the same `value`, whatever the honest ones.

  The "same-value" attack of Li, Xu, Chen, Giannakis, Ling, "RSA: Byzantine-Robust
  Stochastic Aggregation Methods for Distributed Learning from Heterogeneous
  Datasets", AAAI 2019: a non-omniscient attack that ignores the honest
  gradients. Any n and f.

  Args:
    value: the finite value of every coordinate (default 1.0); the `nan` and
      `inf` attacks cover non-finite values.
  """

  name = "constant"
  reference = "Li et al., AAAI 2019 (same-value attack)"
  params = {"value": 1.0}

  def check(self, n: int, f_real: int, f_decl: int, value: float) -> None:
    try:
      _common.check_number(self.name, "value", value)
    except ValueError as error:
      raise ValueError(f"{error}; use the nan or inf attacks for non-finite values") from None

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, value: float) -> tf.Tensor:
    return tf.fill([f_real, honest.shape[1]], tf.constant(value, honest.dtype))
