"""Fall of Empires: inner-product manipulation."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


def scaled_mean(honest: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
  """(d,) -epsilon * mean(honest); `epsilon` may be a tensor (the line search of optimal-empire)."""
  return -epsilon * _common.honest_mean(honest)


@attacks.register
class Empire(attacks.Attack):
  """Every Byzantine gradient is -epsilon * mean(honest).

  Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by
  Inner Product Manipulation", UAI 2019 (PMLR 115, 2020). The attack makes the
  inner product of the aggregate with the true gradient negative: a small
  epsilon keeps the Byzantine gradients close to the honest ones, which fools
  distance-based rules such as Krum; a larger one pulls coordinate-wise rules
  further. Any n and f.

  The factor is epsilon in Xie et al.'s convention: each Byzantine worker sends
  -epsilon * mean, so factor=1 sends exactly the reversed mean. Xie et al.
  evaluate several epsilons, small ones (below 1) against Krum and large ones
  against the coordinate-wise rules. The "empire" attack of El-Mhamdi,
  Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient Stochastic
  Gradient Descent", ICLR 2021, writes its vector as mean + 1.1 * (-mean),
  which is -0.1 * mean: epsilon = 0.1 here, the default, so that the plain
  attack matches that paper's experiments. Their factor 1.1 is 1 + epsilon.

  Args:
    factor: epsilon, a finite number > 0 (default 0.1, see above).
      `optimal-empire` searches it against a given rule.
  """

  name = "empire"
  reference = "Xie et al., UAI 2019, arXiv:1903.03936"
  params = {"factor": 0.1}

  def check(self, n: int, f_real: int, f_decl: int, factor: float) -> None:
    _common.check_number(self.name, "factor", factor, minimum=0, strict=True)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, factor: float) -> tf.Tensor:
    return _common.repeat(scaled_mean(honest, tf.constant(factor, honest.dtype)), f_real)
