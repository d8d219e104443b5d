"""Tests of the `little` attack (A Little Is Enough, Baruch et al., NeurIPS 2019)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks.little import alie_z, supporters_needed

# Column 0: mean 2, unbiased std sqrt(((-2)^2 + 0 + 2^2) / 2) = 2; column 1: mean 1, std 0.
HONEST = np.array([[0., 1.], [2., 1.], [4., 1.]])


@pytest.mark.parametrize("n, f, s, z, tolerance", [
    # n = 50, f = 24: s = 26 - 24 = 2, z = Phi^-1(48/50 = 0.96) = 1.7507 (normal table).
    (50, 24, 2, 1.75069, 1e-4),
    # n = 7, f = 2: s = 4 - 2 = 2, z = Phi^-1(5/7 = 0.7143) ~ 0.566 (table: Phi(0.56) = .7123, Phi(0.57) = .7157).
    (7, 2, 2, 0.566, 1e-3),
    # n = 11, f = 5: s = 6 - 5 = 1, z = Phi^-1(10/11 = 0.9091) ~ 1.335 (table: Phi(1.33) = .9082, Phi(1.34) = .9099).
    (11, 5, 1, 1.335, 1e-3),
    # n = 5, f = 2: s = 3 - 2 = 1, z = Phi^-1(0.8) = 0.8416.
    (5, 2, 1, 0.84162, 1e-4),
])
def test_z_from_n_and_f(n, f, s, z, tolerance):
  assert supporters_needed(n, f) == s
  assert alie_z(n, f) == pytest.approx(z, abs=tolerance)


def test_mean_plus_z_std_with_the_paper_z():
  # n = 3 honest + 2 Byzantine = 5, f_real = 2: z = Phi^-1(0.8) = 0.84162.
  out = attacks.get("little")(HONEST, 2, 2).numpy()
  np.testing.assert_allclose(out, [[2 + 2 * 0.841621, 1.]] * 2, atol=1e-5)


def test_z_uses_f_real_not_f_decl():
  np.testing.assert_array_equal(attacks.get("little")(HONEST, 2, 0).numpy(), attacks.get("little")(HONEST, 2, 2).numpy())


def test_factor_overrides_z_and_may_be_negative():
  np.testing.assert_allclose(attacks.get("little")(HONEST, 1, 1, factor=1.5).numpy(), [[5., 1.]])
  np.testing.assert_allclose(attacks.get("little")(HONEST, 1, 1, factor=-1.0).numpy(), [[0., 1.]])


def test_single_honest_worker_has_zero_spread():
  out = attacks.get("little")(np.array([[3., -1.]], np.float32), 1, 1)
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), [[3., -1.]])


def test_byzantine_majority_needs_a_factor():
  # n = 10, f = 6: s = 6 - 6 = 0, no honest supporter is needed and z is undefined.
  honest = np.ones((4, 2))
  with pytest.raises(ValueError, match=r"attack little: .*s = floor\(n/2 \+ 1\) - f >= 1.*got n=10, f=6.*pass factor="):
    attacks.get("little")(honest, 6, 6)
  np.testing.assert_array_equal(attacks.get("little")(honest, 6, 6, factor=2.0).numpy(), np.ones((6, 2)))


@pytest.mark.parametrize("factor, message", [
    (float("nan"), "attack little needs a finite factor"),
    ("1.5", "attack little expects factor as a number"),
])
def test_bad_factor(factor, message):
  with pytest.raises(ValueError, match=message):
    attacks.get("little")(HONEST, 1, 1, factor=factor)


def test_runs_in_tf_function():
  out = tf.function(lambda x: attacks.get("little")(x, 2, 2))(tf.constant(HONEST))
  np.testing.assert_allclose(out.numpy(), [[2 + 2 * 0.841621, 1.]] * 2, atol=1e-5)
