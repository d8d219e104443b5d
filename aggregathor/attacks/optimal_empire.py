"""Fall of Empires with its epsilon searched against the rule under attack."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common
from aggregathor.attacks._line_search import LineSearch
from aggregathor.attacks.empire import Empire, scaled_mean


@attacks.register
class OptimalEmpire(LineSearch):
  """`empire` (-epsilon * mean of the honest gradients) with epsilon tuned to push the given rule furthest.

  Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by
  Inner Product Manipulation", UAI 2019, with epsilon chosen by a line search:
  the epsilon in [factor_min, factor_max] maximising the distance between the
  rule's output and the honest mean, as the "optimal" attack variants of
  El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient
  Stochastic Gradient Descent", ICLR 2021, do. The plain attack's default
  epsilon (0.1) is also tried. The rule gets f_decl; n is honest + f_real. The
  search is described in `LineSearch`; it also runs inside `tf.function`.

  Args:
    gar_args: the rule's arguments, a dict (default none).
    factor_min, factor_max: the range of epsilon searched (default [0, 10]).
    points: grid points per round, >= 2 (default 9).
    rounds: zooming rounds, >= 1, with points * rounds <= 64 (default 3).
  """

  name = "optimal-empire"
  reference = "Xie et al., UAI 2019, with a line search of epsilon"
  factor_name = "epsilon"

  def _build(self, honest: tf.Tensor, f_real: int, factor: tf.Tensor) -> tf.Tensor:
    return _common.repeat(scaled_mean(honest, factor), f_real)

  def _default_factor(self, n: int, f_real: int) -> float | None:
    return float(Empire.params["factor"])
