"""Gaussian noise (the attack named `random`; the module is not named `random`, which would shadow the standard library)."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


@attacks.register
class Random(attacks.Attack):
  """Every Byzantine gradient is drawn i.i.d. from N(mean, std^2) per coordinate, ignoring the honest ones.

  The Gaussian Byzantine workers of Blanchard, El Mhamdi, Guerraoui, Stainer,
  "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent",
  NeurIPS 2017 (their experiments use a large isotropic variance). Each of the
  f_real gradients is an independent draw. Any n and f.

  Args:
    mean: the finite mean of every coordinate (default 0).
    std: the finite standard deviation, >= 0 (default 1).
    seed: None (default) draws from TensorFlow's global random stream (set by
      `tf.random.set_seed`), so successive calls differ; an int >= 0 uses
      stateless sampling: the same seed always gives the same gradients, and it
      also compiles with XLA.
  """

  name = "random"
  reference = "Blanchard et al., NeurIPS 2017 (Gaussian Byzantine workers)"
  params = {"mean": 0.0, "std": 1.0, "seed": None}

  def check(self, n: int, f_real: int, f_decl: int, mean: float, std: float, seed: int | None) -> None:
    _common.check_number(self.name, "mean", mean)
    _common.check_number(self.name, "std", std, minimum=0)
    _common.check_seed(self.name, seed)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, mean: float, std: float,
              seed: int | None) -> tf.Tensor:
    noise = _common.normal([f_real, honest.shape[1]], honest.dtype, seed)
    return tf.constant(mean, honest.dtype) + tf.constant(std, honest.dtype) * noise
