"""Tests of the `partial-drop` attack."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks

HONEST = np.array([[1., 2., 3., 4.], [3., 4., 5., 6.]])  # mean (2, 3, 4, 5)


def attack(honest=HONEST, f_real=2, **kwargs) -> np.ndarray:
  return attacks.get("partial-drop")(honest, f_real, f_real, **kwargs).numpy()


def test_probability_zero_is_the_honest_mean():
  np.testing.assert_array_equal(attack(probability=0.0), [[2., 3., 4., 5.]] * 2)


def test_probability_one_drops_everything_to_nan():
  assert np.isnan(attack(probability=1.0)).all()


def test_fill_value():
  np.testing.assert_array_equal(attack(probability=1.0, fill=0.0), np.zeros((2, 4)))


def test_dropped_fraction_and_kept_values():
  honest = np.ones((3, 5000), np.float32)
  out = attacks.get("partial-drop")(honest, 2, 2, probability=0.3, seed=1)
  assert out.dtype == tf.float32
  out = out.numpy()
  dropped = np.isnan(out)
  # 10000 coordinates: the standard error of the fraction is ~0.005.
  assert abs(dropped.mean() - 0.3) < 0.02
  np.testing.assert_array_equal(out[~dropped], 1.)
  # Independent per Byzantine worker.
  assert not np.array_equal(dropped[0], dropped[1])


def test_worker_source_copies_an_honest_worker_per_byzantine_row():
  honest = np.array([[1.] * 50, [2.] * 50, [3.] * 50])
  out = attack(honest, f_real=6, probability=0.5, source="worker", seed=4)
  sources = set()
  for row in out:
    kept = row[~np.isnan(row)]
    assert kept.size and np.all(kept == kept[0])
    sources.add(kept[0])
  assert sources <= {1., 2., 3.} and len(sources) > 1


def test_seed_is_reproducible():
  a = attack(probability=0.5, seed=3)
  np.testing.assert_array_equal(attack(probability=0.5, seed=3), a)


@pytest.mark.parametrize("kwargs, message", [
    ({"probability": 1.5}, "attack partial-drop needs 0 <= probability <= 1, got probability=1.5"),
    ({"probability": -0.1}, "attack partial-drop needs probability >= 0"),
    ({"fill": "nan"}, "attack partial-drop expects fill as a number"),
    ({"source": "median"}, "attack partial-drop expects source to be one of 'mean', 'worker', got 'median'"),
    ({"seed": -2}, "attack partial-drop needs 0 <= seed"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    attack(**kwargs)
