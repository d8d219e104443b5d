"""A Little Is Enough (ALIE)."""

from __future__ import annotations

import statistics

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


def supporters_needed(n: int, f: int) -> int:
  """ALIE's s = floor(n/2 + 1) - f: the honest workers the attacker must sway to hold a majority."""
  return (n // 2 + 1) - f


def alie_z(n: int, f: int) -> float:
  """ALIE's z_max = Phi^-1((n - s) / n), the largest z with Phi(z) < (n - s)/n (Baruch et al., Algorithm 3).

  Defined for f >= 1 Byzantine workers out of n and s >= 1, i.e. f <= floor(n/2)
  (no Byzantine majority); raises `ValueError` otherwise.
  """
  if f < 1 or n < 2:
    raise ValueError(f"ALIE's z needs n >= 2 workers and f >= 1 Byzantine ones, got n={n}, f={f}")
  s = supporters_needed(n, f)
  if s < 1:
    raise ValueError(f"ALIE's z needs s = floor(n/2 + 1) - f >= 1, i.e. f <= floor(n/2), got n={n}, f={f} (s={s}); "
                     f"pass factor=<a number> to set z yourself")
  # 1 <= s <= n/2, so the quantile's probability lies in [1/2, 1): z is finite and >= 0.
  return statistics.NormalDist().inv_cdf((n - s) / n)


@attacks.register
class Little(attacks.Attack):
  """Every Byzantine gradient is mean(honest) + z * std(honest), per coordinate.

  Baruch, Baruch, Goldberg, "A Little Is Enough: Circumventing Defenses For
  Distributed Learning", NeurIPS 2019, Algorithm 3: with s = floor(n/2 + 1) - f
  the number of honest "supporters" needed for a majority, z = z_max =
  Phi^-1((n - s)/n) (Phi the standard normal CDF), and each coordinate moves z
  standard deviations from the mean, small enough to look honest to
  median- and distance-based rules.

  Conventions (choices where the paper leaves room):
  - n is the total number of workers, honest + f_real, and f is f_real, the
    Byzantine workers the attacker really controls (not the rules' f_decl).
  - The sign is the paper's, mean + z*std; the bucketing paper's code
    (Karimireddy et al., ICLR 2022) uses mean - z*std: pass a negative factor.
  - mean and std are of the honest gradients (an omniscient attacker, as in
    the paper's experiments); std is the unbiased sample standard deviation,
    0 with a single honest gradient.
  Needs f_real <= floor(n/2) when z is computed; any n and f with `factor`.

  Args:
    factor: z, a finite number; None (default) computes z_max from n and f_real.
  """

  name = "little"
  reference = "Baruch et al., NeurIPS 2019, arXiv:1902.06156"
  params = {"factor": None}

  def check(self, n: int, f_real: int, f_decl: int, factor: float | None) -> None:
    if factor is not None:
      _common.check_number(self.name, "factor", factor)
    elif f_real > 0:
      try:
        alie_z(n, f_real)
      except ValueError as error:
        raise ValueError(f"attack little: {error}") from None

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, factor: float | None) -> tf.Tensor:
    z = alie_z(honest.shape[0] + f_real, f_real) if factor is None else factor
    return _common.repeat(shifted_mean(honest, tf.constant(z, honest.dtype)), f_real)


def shifted_mean(honest: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
  """(d,) mean(honest) + z * std(honest); `z` may be a tensor (the line search of optimal-little)."""
  return _common.honest_mean(honest) + z * _common.honest_std(honest)

