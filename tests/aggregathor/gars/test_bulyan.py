"""Tests of the `bulyan` rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars


def rule() -> gars.Rule:
  return gars.get("bulyan")


# n = 7, f = 1: theta = 5 Krum picks, then per coordinate the mean of beta = 3 values closest to the median.
POINTS = np.array([[8., 4.], [4., 4.], [5., 0.], [9., 2.], [7., 0.], [4., 5.], [4., 6.]])
# Squared distances:
#        0   1   2   3   4   5   6
#   0 [  0  16  25   5  17  17  20]
#   1 [ 16   0  17  29  25   1   4]
#   2 [ 25  17   0  20   4  26  37]
#   3 [  5  29  20   0   8  34  41]
#   4 [ 17  25   4   8   0  34  45]
#   5 [ 17   1  26  34  34   0   1]
#   6 [ 20   4  37  41  45   1   0]
# Pool of 7, 4 neighbours: 0: 5+16+17+17=55, 1: 1+4+16+17=38, 2: 4+17+20+25=66, 3: 5+8+20+29=62,
#   4: 4+8+17+25=54, 5: 1+1+17+26=45, 6: 1+4+20+37=62                     -> pick 1.
# Pool {0,2,3,4,5,6}, 3 neighbours: 0: 5+17+17=39, 2: 4+20+25=49, 3: 5+8+20=33, 4: 4+8+17=29,
#   5: 1+17+26=44, 6: 1+20+37=58                                          -> pick 4.
# Pool {0,2,3,5,6}, 2 neighbours: 0: 5+17=22, 2: 20+25=45, 3: 5+20=25, 5: 1+17=18, 6: 1+20=21 -> pick 5.
# Pool {0,2,3,6}, 1 neighbour: 0: 5, 2: 20, 3: 5, 6: 20; 0 and 3 tie, broken by the sum of squared
#   distances to the pool: 0: 25+5+20=50, 3: 20+5+41=66                   -> pick 0.
# Pool {2,3,6}, 0 neighbours: all 0; sums 2: 20+37=57, 3: 20+41=61, 6: 37+41=78 -> pick 2.
# Selected rows 1, 4, 5, 0, 2: column 0 = 4, 7, 4, 8, 5 (median 5; closest 5, 4, 4 -> 13/3);
# column 1 = 4, 0, 5, 4, 0 (median 4; closest 4, 4, 5 -> 13/3).
# (Scoring every pool with a fixed n-f-2 = 4 neighbours would select rows 0, 1, 2, 3, 5; taking the
# 5 lowest first-round scores without removal would select rows 0, 1, 3, 4, 5.)
EXPECTED = [13 / 3, 13 / 3]
EXPECTED_MASK = [1, 1, 1, 0, 1, 1, 0]


def test_hand_computed():
  out, mask = rule().aggregate_and_select(POINTS, f=1)
  np.testing.assert_allclose(out.numpy(), EXPECTED)
  np.testing.assert_array_equal(mask.numpy(), EXPECTED_MASK)


def test_hand_computed_is_order_independent():
  # The last two picks tie on the Krum score; the tie-break must not depend on row order.
  for seed in range(5):
    order = np.random.default_rng(seed).permutation(7)
    out, mask = rule().aggregate_and_select(POINTS[order], f=1)
    np.testing.assert_allclose(out.numpy(), EXPECTED)
    np.testing.assert_array_equal(mask.numpy(), np.array(EXPECTED_MASK)[order])


def test_no_byzantine_is_the_mean():
  # f = 0: theta = n picks (everything), beta = n values per coordinate.
  x = np.array([[1., -3.], [2., 0.], [6., 9.]])
  np.testing.assert_allclose(rule().aggregate(x, f=0).numpy(), [3., 2.])


def test_nan_row_is_never_picked():
  x = POINTS.copy()
  x[1] = [np.nan, 0.]
  out, mask = rule().aggregate_and_select(x, f=1)
  assert np.all(np.isfinite(out.numpy()))
  assert mask.numpy()[1] == 0 and mask.numpy().sum() == 5


def test_check_boundary():
  rule().check(n=7, f=1)
  rule().check(n=11, f=2)
  with pytest.raises(ValueError, match=re.escape("bulyan needs n >= 4f+3, got n=6, f=1")):
    rule().check(n=6, f=1)
  with pytest.raises(ValueError, match=re.escape("bulyan needs n >= 4f+3, got n=10, f=2")):
    rule().aggregate(np.ones((10, 2)), f=2)


def test_upper_bound():
  assert rule().upper_bound(n=7, f=1, d=2) == pytest.approx(1 / math.sqrt(18))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant(POINTS, tf.float32)).numpy(), EXPECTED, rtol=1e-6)


def test_a_non_finite_gradient_in_the_pool_leaves_the_picks_distinct():
  # Values 7, 0, 1, 3, 15, 31 and a NaN row (+inf from all), f=1: theta=5 picks, beta=3.
  # Scores with 4, 3, 2, 1, 0 neighbours: 7 (165), then 3 (157), then 1 (197), then 0 and 15 tie
  # (225): each is at +inf from the NaN row, and 15 is nearer the rest (225+256 < 225+961); then
  # 0, 31 and NaN all score 0: NaN is at +inf from both others, 0 and 31 tie (961), the lower
  # index wins. Every total with the NaN row in the pool is +inf, where tf.argmin would return
  # row 0 (7) again and again: on the CPU it passes over +inf and dtype.max.
  x = np.array([[7.], [0.], [1.], [3.], [15.], [31.], [np.nan]], np.float32)
  aggregated, selected = rule().aggregate_and_select(x, f=1)
  np.testing.assert_array_equal(selected.numpy(), [1., 1., 1., 1., 1., 0., 0.])
  # Selected 0, 1, 3, 7, 15; median 3; the 3 closest to it: 0, 1, 3.
  np.testing.assert_allclose(aggregated.numpy(), [4. / 3.], rtol=1e-6)


def reference_krum_picks(x: np.ndarray, f: int, theta: int) -> list[int]:
  """The docstring's picks, pool by pool, in plain Python: exact on small integer coordinates."""
  n = len(x)
  finite = np.all(np.isfinite(x), axis=1)
  distances = np.full((n, n), np.inf)
  for i in range(n):
    for j in range(n):
      if i == j or (finite[i] and finite[j]):
        distances[i, j] = float(np.sum((x[i] - x[j]) ** 2)) if i != j else 0.
  pool, picks = list(range(n)), []
  for _ in range(theta):
    k = len(pool) - f - 2
    def key(i):
      to_pool = [distances[i, j] for j in pool if j != i]
      score = min(sum(sorted(to_pool)[:max(k, 0)]), float(np.finfo(np.float32).max))
      return (score, sum(np.isinf(to_pool)), sum(v for v in to_pool if np.isfinite(v)), i)
    pick = min(pool, key=key)
    picks.append(pick)
    pool.remove(pick)
  return picks


@pytest.mark.parametrize("n, f, seed", [(7, 1, 0), (7, 1, 1), (7, 1, 2), (11, 2, 0), (11, 2, 1), (35, 8, 0),
                                        (67, 16, 0), (130, 31, 0)])
def test_krum_picks_are_the_definition(n, f, seed):
  # Small integer coordinates make every sum exact, so ties are real ties: duplicated rows, a non-finite
  # row and many equal distances; the windows over the sorted distances must pick as the definition does.
  from aggregathor import ops  # pylint: disable=g-import-not-at-top
  from aggregathor.gars import bulyan  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng([n, seed]).integers(-3, 4, (n, 20)).astype(np.float32)
  x[1] = x[0]
  x[3] = x[2]
  x[-1, 0] = np.inf
  theta = n - 2 * f
  expected = reference_krum_picks(x, f, theta)
  gram = tf.matmul(tf.constant(x), tf.constant(x), transpose_b=True)
  np.testing.assert_array_equal(bulyan._krum_picks_from_gram(gram, f, theta).numpy(), expected)
  if n <= 11:  # uncompiled too, as a while loop of TensorFlow ops
    distances = ops.squared_distances_from_gram(gram)
    np.testing.assert_array_equal(bulyan.krum_picks(distances, f, theta).numpy(), expected)
