"""Tests of the `empire` (Fall of Empires, inner-product manipulation) attack."""

from __future__ import annotations

import numpy as np
import pytest

from aggregathor import attacks

HONEST = np.array([[1., 2.], [3., 6.]])  # mean (2, 4)


def test_default_is_the_distributed_momentum_papers_setting():
  # El-Mhamdi et al. (ICLR 2021) send mean + 1.1 * (-mean) = -0.1 * mean: epsilon = 0.1.
  mean = HONEST.mean(axis=0)
  np.testing.assert_allclose(attacks.get("empire")(HONEST, 2, 2).numpy(), [mean + 1.1 * -mean] * 2, rtol=1e-12)


def test_factor_is_xie_et_al_epsilon():
  np.testing.assert_allclose(attacks.get("empire")(HONEST, 1, 1, factor=1.1).numpy(), [[-2.2, -4.4]], rtol=1e-12)


def test_small_epsilon():
  np.testing.assert_allclose(attacks.get("empire")(HONEST, 1, 1, factor=0.1).numpy(), [[-0.2, -0.4]], rtol=1e-12)


def test_inner_product_with_the_honest_mean_is_negative():
  honest = np.random.default_rng(0).normal(loc=0.5, size=(7, 20))
  out = attacks.get("empire")(honest, 2, 2, factor=0.3).numpy()
  assert out[0] @ honest.mean(axis=0) < 0


@pytest.mark.parametrize("factor, message", [
    (0, "attack empire needs factor > 0, got factor=0"),
    (-0.1, "attack empire needs factor > 0"),
    (float("inf"), "attack empire needs a finite factor"),
])
def test_bad_factor(factor, message):
  with pytest.raises(ValueError, match=message):
    attacks.get("empire")(HONEST, 1, 1, factor=factor)
