"""Tests of the `random` attack (module gaussian.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks

HONEST = np.zeros((3, 4))


def attack(honest=HONEST, f_real=2, **kwargs) -> tf.Tensor:
  return attacks.get("random")(honest, f_real, f_real, **kwargs)


def test_moments_match_the_arguments():
  out = attack(np.zeros((2, 20000)), f_real=3, mean=3.0, std=2.0, seed=0).numpy()
  assert out.shape == (3, 20000)
  # 60000 draws: the standard error of the mean is 2/245 ~ 0.008.
  assert abs(out.mean() - 3.0) < 0.05
  assert abs(out.std() - 2.0) < 0.05
  # Independent rows, not one draw repeated.
  assert not np.array_equal(out[0], out[1])


def test_ignores_the_honest_gradients():
  a = attack(np.full((3, 4), 1e6), seed=5).numpy()
  b = attack(np.full((3, 4), -7.0), seed=5).numpy()
  np.testing.assert_array_equal(a, b)


def test_zero_std_gives_the_mean():
  np.testing.assert_array_equal(attack(mean=-1.5, std=0.0).numpy(), np.full((2, 4), -1.5))


def test_seed_is_reproducible_and_seeds_differ():
  np.testing.assert_array_equal(attack(seed=7).numpy(), attack(seed=7).numpy())
  assert not np.array_equal(attack(seed=7).numpy(), attack(seed=8).numpy())


def test_stateful_without_seed_gives_new_draws():
  assert not np.array_equal(attack().numpy(), attack().numpy())


def test_seeded_compiles_with_xla():
  fn = tf.function(lambda x: attack(x, seed=3), jit_compile=True)
  out = fn(tf.constant(HONEST, tf.float32))
  assert out.shape == (2, 4) and out.dtype == tf.float32
  assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"std": -1.0}, "attack random needs std >= 0, got std=-1"),
    ({"std": float("inf")}, "attack random needs a finite std"),
    ({"mean": "0"}, "attack random expects mean as a number"),
    ({"seed": -1}, "attack random needs 0 <= seed"),
    ({"seed": 1.5}, "attack random expects seed as an int"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    attack(**kwargs)
