"""Sign flipping: the negated honest mean."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


@attacks.register
class SignFlip(attacks.Attack):
  """Every Byzantine gradient is the negated honest mean, -mean(honest).

  The omniscient form of the sign-flipping attack, in which a Byzantine worker
  sends the negation of the gradient it should have sent, as evaluated in
  Allen-Zhu, Ebrahimian, Li, Alistarh, "Byzantine-Resilient Non-Convex
  Stochastic Gradient Descent", ICLR 2021, and (as "bit flipping") in
  Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
  Optimization", ICML 2021. It is `empire` with epsilon = 1 and `reverse` with
  factor = 1. Any n and f. No arguments.
  """

  name = "sign-flip"
  reference = "Allen-Zhu et al., ICLR 2021; Karimireddy et al., ICML 2021 (bit flipping)"

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object) -> tf.Tensor:
    return _common.repeat(-_common.honest_mean(honest), f_real)
