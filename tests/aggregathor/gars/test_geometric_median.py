"""Tests of the `geometric-median` rule (smoothed Weiszfeld, RFA)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars
from aggregathor.gars import geometric_median

nan, inf = np.nan, np.inf
# Three points whose geometric (Fermat) point sees each side under 120°: (0, 1/sqrt(3)).
TRIANGLE = np.array([[1., 0.], [0., 1.], [-1., 0.]])
FERMAT = [0., 1 / math.sqrt(3)]


def rule() -> gars.Rule:
  return gars.get("geometric-median")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fermat_point_of_a_triangle(dtype):
  # The default tolerance stops once a step is below 1e-6 of the median distance (about 0.8 here).
  out = rule().aggregate(TRIANGLE.astype(dtype), f=1)
  assert out.dtype == dtype
  np.testing.assert_allclose(out.numpy(), FERMAT, atol=1e-5)


def test_obtuse_triangle_gives_the_obtuse_vertex():
  # The angle at (0, 1) is about 169° >= 120°, so that vertex is the geometric median.
  x = np.array([[0., 1.], [10., 0.], [-10., 0.]])
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [0., 1.], atol=1e-5)
  np.testing.assert_allclose(rule().aggregate(x.astype(np.float32), f=1).numpy(), [0., 1.], atol=1e-2)


def test_one_weiszfeld_step_from_the_start():
  # f=0: the start is the mean (2/3, 4/3); its distances to the points are
  # sqrt(20)/3, sqrt(32)/3, sqrt(68)/3, and one step averages with weights 1/distance.
  x = np.array([[0., 0.], [2., 0.], [0., 4.]])
  weights = 3 / np.sqrt([20., 32., 68.])
  expected = weights @ x / weights.sum()
  np.testing.assert_allclose(rule().aggregate(x, f=0, iterations=1).numpy(), expected, rtol=1e-12)
  np.testing.assert_allclose(expected, [0.677758, 0.929876], atol=1e-6)
  # A tolerance of 1 stops after that first step too: it moved by less than the median distance.
  np.testing.assert_allclose(rule().aggregate(x, f=0, tolerance=1.).numpy(), expected, rtol=1e-12)


def test_all_equal_gradients():
  np.testing.assert_array_equal(rule().aggregate(np.full((5, 3), 7., np.float32), f=2).numpy(), [7., 7., 7.])


def test_single_gradient():
  np.testing.assert_array_equal(rule().aggregate(np.array([[1., -2.]], np.float32), f=0).numpy(), [1., -2.])


@pytest.mark.parametrize("byzantine", [[[nan, 0.], [1., nan]], [[inf, 0.], [-inf, -inf]], [[nan, inf], [0., -inf]]])
def test_non_finite_rows_get_zero_weight(byzantine):
  x = np.concatenate([TRIANGLE, byzantine]).astype(np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=2).numpy(), FERMAT, atol=1e-5)


@pytest.mark.parametrize("dtype, huge", [(np.float32, 1e30), (np.float32, 3e38), (np.float64, 1e300)])
def test_huge_byzantine_rows_pulling_in_opposite_directions_cancel(dtype, huge):
  # Honest points symmetric around 0, Byzantine ones at ±huge on the y axis: the median is 0 by symmetry.
  x = np.array([[1., 0.], [-1., 0.], [0., 1.], [0., -1.], [0., huge], [0., -huge]], dtype)
  np.testing.assert_allclose(rule().aggregate(x, f=2).numpy(), [0., 0.], atol=1e-5)


def test_random_byzantine_rows_stay_near_the_honest_gradients():
  rng = np.random.default_rng(4)
  honest = rng.normal(size=(6, 40)).astype(np.float32) + 3
  byzantine = np.stack([np.full(40, nan), np.full(40, -1e30), rng.normal(size=40) * 1e20, np.full(40, inf)])
  out = rule().aggregate(np.concatenate([byzantine.astype(np.float32), honest]), f=4).numpy()
  assert np.all(np.isfinite(out))
  # Within the honest bounding box widened by their largest distance to their mean.
  radius = np.linalg.norm(honest - honest.mean(axis=0), axis=1).max()
  assert np.linalg.norm(out - honest.mean(axis=0)) <= radius


def test_no_finite_row_gives_nan():
  assert np.all(np.isnan(rule().aggregate(np.full((3, 2), nan, np.float32), f=1).numpy()))


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("geometric-median needs n >= 2f+1, got n=4, f=2")):
    rule().check(n=4, f=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 0}, "geometric-median needs 1 <= iterations, got iterations=0"),
    ({"iterations": 2.5}, "geometric-median expects iterations as an int, got 2.5"),
    ({"tolerance": -1e-3}, "geometric-median needs a finite tolerance >= 0, got tolerance=-0.001"),
    ({"smoothing": 0.}, "geometric-median needs a finite smoothing > 0, got smoothing=0.0"),
    ({"smoothing": nan}, "geometric-median needs a finite smoothing > 0, got smoothing=nan"),
    ({"nu": 1e-3}, "geometric-median got unknown argument(s) nu; accepted: iterations, smoothing, tolerance"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    rule().check(n=3, f=1, **kwargs)
  with pytest.raises(ValueError, match=re.escape(message)):
    rule().aggregate(TRIANGLE, f=1, **kwargs)


def test_tolerance_zero_runs_every_iteration():
  np.testing.assert_allclose(rule().aggregate(TRIANGLE, f=1, tolerance=0).numpy(), FERMAT, atol=1e-7)


def test_list_input():
  rows = [tf.constant(row, tf.float64) for row in TRIANGLE]
  np.testing.assert_allclose(rule().aggregate(rows, f=1).numpy(), FERMAT, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant(np.concatenate([TRIANGLE, [[nan, 1.], [1e30, -1e30]]]), tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=2), jit_compile=jit_compile)
  out = compiled(x).numpy()
  assert np.all(np.isfinite(out))
  honest_only = compiled(tf.constant(np.concatenate([TRIANGLE, [[nan, 1.], [nan, nan]]]), tf.float32)).numpy()
  np.testing.assert_allclose(honest_only, FERMAT, atol=1e-5)


def _float64_geometric_median(x: np.ndarray, iterations: int = 2000) -> np.ndarray:
  # Plain Weiszfeld in float64 on the centered points, from the coordinate-wise median.
  center = np.median(x, axis=0)
  shift = x.mean(axis=0)
  points, v = x - shift, center - shift
  for _ in range(iterations):
    weights = 1 / np.maximum(np.linalg.norm(points - v, axis=1), 1e-12)
    v = weights @ points / weights.sum()
  return v + shift


@pytest.mark.parametrize("offset", [0., 1e3])
def test_accurate_relative_to_the_spread_near_and_far_from_the_origin(offset, monkeypatch):
  # Far from the origin (offset 1e3 against a spread of 1e-2) the centered Gram product derived from the
  # plain one would cancel to noise: the rule must take the centered pass there, and the cheap one near 0.
  x = np.random.default_rng(3).standard_normal((9, 500)) * 1e-2 + offset
  expected = _float64_geometric_median(x)
  out = rule().aggregate(x.astype(np.float32), f=2, tolerance=0.).numpy()
  spread = np.linalg.norm(x - expected, axis=1).mean()
  assert np.linalg.norm(out - expected) <= 1e-3 * spread + np.linalg.norm(np.float32(expected) - expected)
  # The cheap way, where it is taken, agrees with the centered pass.
  monkeypatch.setattr(geometric_median, "DERIVED_AMPLIFICATION", 0.)
  exact = rule().aggregate(x.astype(np.float32), f=2, tolerance=0.).numpy()
  np.testing.assert_allclose(out, exact, atol=1e-4 * spread + 1e-7 * offset)
