"""ALIE with its z searched against the rule under attack."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common
from aggregathor.attacks._line_search import LineSearch
from aggregathor.attacks.little import alie_z, shifted_mean


@attacks.register
class OptimalLittle(LineSearch):
  """`little` (mean + z * std of the honest gradients) with z tuned to push the given rule furthest.

  Baruch, Baruch, Goldberg, "A Little Is Enough: Circumventing Defenses For
  Distributed Learning", NeurIPS 2019, with z chosen by a line search instead
  of the paper's z_max: the z in [factor_min, factor_max] maximising the
  distance between the rule's output and the honest mean, as the "optimal"
  attack variants of El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for
  Byzantine-resilient Stochastic Gradient Descent", ICLR 2021, do. The paper's
  z_max (when f_real <= floor(n/2)) is also tried. Statistics as in `little`
  (unbiased std). The rule gets f_decl; n is honest + f_real. The search is
  described in `LineSearch`; it also runs inside `tf.function`.

  Args:
    gar_args: the rule's arguments, a dict (default none).
    factor_min, factor_max: the range of z searched (default [0, 10]).
    points: grid points per round, >= 2 (default 9).
    rounds: zooming rounds, >= 1, with points * rounds <= 64 (default 3).
  """

  name = "optimal-little"
  reference = "Baruch et al., NeurIPS 2019, with a line search of z"
  factor_name = "z"

  def _build(self, honest: tf.Tensor, f_real: int, factor: tf.Tensor) -> tf.Tensor:
    return _common.repeat(shifted_mean(honest, factor), f_real)

  def _default_factor(self, n: int, f_real: int) -> float | None:
    try:
      return alie_z(n, f_real)
    except ValueError:
      return None
