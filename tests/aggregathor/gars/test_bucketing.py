"""Tests of the `bucketing` pre-aggregation."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor.gars.bucketing import Bucketing

POWERS = np.array([[1.], [10.], [100.], [1000.], [10000.]])


def bucket_sums(out: np.ndarray, sizes: list[int]) -> list[frozenset]:
  """Which rows of POWERS each output row averages: a bucket of size s has mean (sum of its powers) / s."""
  buckets = []
  for row in out[:, 0]:
    for size in sizes:
      for members in itertools.combinations(POWERS[:, 0], size):
        if np.isclose(row * size, sum(members)):
          buckets.append(frozenset(members))
  return buckets


def test_pairs_partition_the_rows():
  out = Bucketing().transform(POWERS[:4], f=1, seed=7).numpy()
  assert out.shape == (2, 1)
  buckets = bucket_sums(out, [2])
  assert len(buckets) == 2 and frozenset().union(*buckets) == set(POWERS[:4, 0])


def test_leftover_bucket_when_s_does_not_divide_n():
  # n = 5, s = 2: two pairs and a single leftover row.
  out = Bucketing().transform(POWERS, f=1, seed=3).numpy()
  assert out.shape == (3, 1)
  pairs = bucket_sums(out[:2], [2])
  assert len(pairs) == 2
  leftover = set(POWERS[:, 0]) - frozenset().union(*pairs)
  np.testing.assert_allclose(out[2], list(leftover))


def test_s_one_is_a_permutation_and_s_n_the_mean():
  out = Bucketing().transform(POWERS, f=0, s=1, seed=0).numpy()
  assert sorted(out[:, 0]) == sorted(POWERS[:, 0])
  np.testing.assert_allclose(Bucketing().transform(POWERS, f=0, s=5).numpy(), [[2222.2]])


def test_seed_fixes_the_permutation_and_none_draws_a_new_one():
  first = Bucketing().transform(POWERS[:4], f=1, seed=11).numpy()
  np.testing.assert_array_equal(Bucketing().transform(POWERS[:4], f=1, seed=11).numpy(), first)
  # 6 orderings of the 3 pairings: 20 identical draws in a row would have probability 6^-19.
  draws = {tuple(Bucketing().transform(POWERS[:4], f=1).numpy()[:, 0]) for _ in range(20)}
  assert len(draws) > 1


def test_output_count_and_rows():
  assert Bucketing.keeps_rows is False
  assert [Bucketing().output_count(n, 1, s, None) for n, s in [(4, 2), (5, 2), (9, 3), (10, 3), (3, 3)]] == \
      [2, 3, 3, 4, 1]


def test_bad_arguments():
  with pytest.raises(ValueError, match=re.escape("bucketing needs 1 <= s <= 5, got s=0")):
    Bucketing().check(n=5, f=1, s=0)
  with pytest.raises(ValueError, match=re.escape("bucketing needs 1 <= s <= 5, got s=6")):
    Bucketing().check(n=5, f=1, s=6)
  with pytest.raises(ValueError, match=re.escape("bucketing expects s as an int, got True")):
    Bucketing().check(n=5, f=1, s=True)
  for seed in (1.5, "1", True, 2**64):
    with pytest.raises(ValueError, match="bucketing expects seed as None or a 64-bit int"):
      Bucketing().check(n=5, f=1, seed=seed)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("seed", [None, 5])
def test_compiles_in_tf_function(jit_compile, seed):
  compiled = tf.function(lambda g: Bucketing().transform(g, f=1, seed=seed), jit_compile=jit_compile)
  out = compiled(tf.constant(POWERS, tf.float32)).numpy()
  assert out.shape == (3, 1)
  np.testing.assert_allclose(out[:2].sum() * 2 + out[2].sum(), 11111, rtol=1e-6)
  if seed is not None:  # the same permutation with and without XLA
    np.testing.assert_array_equal(out, Bucketing().transform(tf.constant(POWERS, tf.float32), f=1, seed=seed).numpy())
