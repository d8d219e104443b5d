"""Tests of the `reverse` attack."""

from __future__ import annotations

import numpy as np
import pytest

from aggregathor import attacks

HONEST = np.array([[1., 2.], [3., 4.]])  # mean (2, 3)


def test_default_factor_is_100():
  np.testing.assert_array_equal(attacks.get("reverse")(HONEST, 2, 2).numpy(), [[-200., -300.]] * 2)


def test_factor():
  np.testing.assert_array_equal(attacks.get("reverse")(HONEST, 1, 1, factor=2).numpy(), [[-4., -6.]])


@pytest.mark.parametrize("factor, message", [
    (0.0, "attack reverse needs factor > 0, got factor=0"),
    (-1.0, "attack reverse needs factor > 0"),
    (float("nan"), "attack reverse needs a finite factor"),
    (None, "attack reverse expects factor as a number"),
])
def test_bad_factor(factor, message):
  with pytest.raises(ValueError, match=message):
    attacks.get("reverse")(HONEST, 1, 1, factor=factor)
