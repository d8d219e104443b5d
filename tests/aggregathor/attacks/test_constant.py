"""Tests of the `constant` attack."""

from __future__ import annotations

import numpy as np
import pytest

from aggregathor import attacks

HONEST = np.array([[5., 6., 7.], [8., 9., 10.]])


def test_default_is_all_ones_whatever_the_honest_gradients():
  np.testing.assert_array_equal(attacks.get("constant")(HONEST, 2, 2).numpy(), np.ones((2, 3)))


def test_value():
  np.testing.assert_array_equal(attacks.get("constant")(HONEST, 1, 1, value=-3.5).numpy(), [[-3.5] * 3])


def test_non_finite_value_points_to_the_nan_and_inf_attacks():
  with pytest.raises(ValueError, match="needs a finite value.*use the nan or inf attacks"):
    attacks.get("constant")(HONEST, 1, 1, value=float("inf"))


def test_value_must_be_a_number():
  with pytest.raises(ValueError, match="attack constant expects value as a number, got '1'"):
    attacks.get("constant")(HONEST, 1, 1, value="1")
