"""Majority vote on the signs (signSGD)."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class SignMajority(gars.Rule):
  """Per coordinate, the sign of the sum of the workers' signs: the majority vote.

  Bernstein, Zhao, Azizzadenesheli, Anandkumar, "signSGD with Majority Vote is
  Communication Efficient and Fault Tolerant", ICLR 2019. The output is in
  {-1, 0, 1}^d (0 on a tie), in the input's dtype: it is a direction, not a
  gradient estimate, so it is meant to be used with a sign-SGD learning rate.
  NaN casts no vote (counts as 0), +inf and -inf vote +1 and -1, so the output
  is always finite. The paper proves fault tolerance for f < n/2 adversaries
  that cannot see the honest votes ("blind multiplicative" ones); an omniscient
  adversary can flip coordinates where the honest vote is close. Needs n >= 2f + 1.
  """

  name = "sign-majority"
  reference = "Bernstein et al., ICLR 2019, arXiv:1810.05291"

  def _check(self, n: int, f: int) -> None:
    if n < 2 * f + 1:
      raise ValueError(f"sign-majority needs n >= 2f+1, got n={n}, f={f}")

  def _aggregate(self, gradients: tf.Tensor, f: int) -> tf.Tensor:
    return _sign_majority(gradients)


@ops.fused
def _sign_majority(gradients: tf.Tensor) -> tf.Tensor:
  def votes(x: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.math.is_nan(x), tf.zeros_like(x), tf.sign(x))

  return tf.sign(ops.column_sums(votes, gradients))  # small integers: exact in any order
