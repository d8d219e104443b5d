"""Tests of the sorting network, the row-wise order statistics and `fused` in aggregathor/ops.py."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars, ops

nan, inf = np.nan, np.inf

# Rules whose work runs through ops.fused.
FUSED_RULES = ["median", "trimmed-mean", "averaged-median", "phocas", "average-nan", "sign-majority", "bulyan",
               "multi-krum"]


def apply_network(n: int, values: np.ndarray) -> np.ndarray:
  """Runs ops.sorting_network(n) on the columns of an (m, n) array, in numpy."""
  values = values.copy()
  for i, j in ops.sorting_network(n):
    low, high = np.minimum(values[:, i], values[:, j]), np.maximum(values[:, i], values[:, j])
    values[:, i], values[:, j] = low, high
  return values


@pytest.mark.parametrize("n", range(1, 15))
def test_network_sorts_every_zero_one_input(n):
  # The 0-1 principle: a comparator network that sorts all 2^n vectors of 0s and 1s sorts everything.
  bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
  assert (np.diff(apply_network(n, bits), axis=1) >= 0).all()


@pytest.mark.parametrize("n", [15, 17, 24, 32, 33, 47, 64])
def test_network_sorts_random_inputs_with_ties(n):
  values = np.random.default_rng(n).integers(0, 4, size=(20_000, n))
  np.testing.assert_array_equal(apply_network(n, values), np.sort(values, axis=1))


def test_network_sizes_are_batchers():
  # Batcher's odd-even merge sort: 1, 3, 19, 63, 191 comparators for 2, 3, 8, 16, 32 elements.
  assert [len(ops.sorting_network(n)) for n in (1, 2, 3, 8, 16, 32)] == [0, 1, 3, 19, 63, 191]
  assert ops.sorting_network(4) == ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_network_of_a_bad_size(bad):
  with pytest.raises(ValueError, match="n >= 1"):
    ops.sorting_network(bad)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 13, ops.SORTING_NETWORK_MAX_ROWS, ops.SORTING_NETWORK_MAX_ROWS + 1])
def test_sort_coordinates_is_ascending_with_non_finite_last(n):
  x = np.random.default_rng(n).normal(size=(n, 40)).astype(np.float32)
  x[0, :10], x[-1, 5:15], x[n // 2, 20:25] = nan, -inf, inf
  expected = np.sort(np.where(np.isfinite(x), x, inf), axis=0)
  np.testing.assert_array_equal(ops.sort_coordinates(tf.constant(x)).numpy(), expected)
  np.testing.assert_array_equal(np.stack([row.numpy() for row in ops.sorted_rows(tf.constant(x))]), expected)


def test_median_of_rows():
  rows = [tf.constant([1., 10.]), tf.constant([2., 20.]), tf.constant([4., 40.]), tf.constant([8., inf])]
  np.testing.assert_array_equal(ops.median_of_rows(rows).numpy(), [3., 30.])
  np.testing.assert_array_equal(ops.median_of_rows(rows[:3]).numpy(), [2., 20.])


def closest_values_sum(column: np.ndarray, center, k: int):
  """Brute force: the sum of the k values of `column` closest to `center`, ties in distance to the smaller value."""
  column = np.where(np.isfinite(column), column, inf).astype(column.dtype)
  distances = np.abs(column - center)  # the same rounding as center - s and s - center
  order = np.lexsort((column, distances))  # by distance, then by value
  return np.sum(column[order[:k]], dtype=np.float64)


def test_sum_of_closest_rows_picks_the_window_nearest_the_center():
  # Sorted columns (1, 2, 3, 10, inf) and (0, 5, 6, 7, 100); the 3 values closest to 3 and to 6.
  rows = [tf.constant([v, w]) for v, w in [(1., 0.), (2., 5.), (3., 6.), (10., 7.), (inf, 100.)]]
  np.testing.assert_array_equal(ops.sum_of_closest_rows(rows, tf.constant([3., 6.]), 3).numpy(), [6., 18.])
  # A window with +inf is never chosen, even when the center is past every finite value.
  np.testing.assert_array_equal(ops.sum_of_closest_rows(rows, tf.constant([1e30, 0.]), 4).numpy(), [16., 18.])
  # A tie in distance keeps the smaller value (1, 2 rather than 2, 3 around 2).
  np.testing.assert_array_equal(ops.sum_of_closest_rows(rows, tf.constant([2., 0.]), 2).numpy(), [3., 5.])
  with pytest.raises(ValueError, match="1 <= k <= n"):
    ops.sum_of_closest_rows(rows, tf.constant([0., 0.]), 6)


def test_sum_of_closest_rows_with_a_repeated_value():
  # Around 0.9, the 4 closest of (0, 0, 0.9, 1, 1.5) are one 0, 0.9, 1 and 1.5 (0.6 away, closer than the second
  # 0). The windows (0, 0, 0.9, 1) and (0, 0.9, 1, 1.5) have equally far ends (0, 0.9 away): choosing by the
  # farther end kept the repeated 0 instead of 1.5.
  rows = [tf.constant([v], tf.float64) for v in (0., 0., 0.9, 1., 1.5)]
  np.testing.assert_allclose(ops.sum_of_closest_rows(rows, tf.constant([0.9], tf.float64), 4).numpy(), [3.4])


@pytest.mark.parametrize("n", [2, 5, 8, 13, 67])
def test_sum_of_closest_rows_matches_brute_force_with_many_repeats(n):
  rng = np.random.default_rng(n)
  # Few distinct values, many exact zeros and repeats, some non-finite; the centers hit values and midpoints.
  x = rng.choice(np.array([0., 0., 0., 0.5, 1., 1., 2., -1., -3., 7., inf], np.float32), size=(n, 400))
  x[:, :100] = np.sort(rng.normal(size=(n, 100)).astype(np.float32).round(1), axis=0)
  x = np.sort(np.where(np.isfinite(x), x, inf), axis=0).astype(np.float32)
  centers = rng.choice(np.array([0., 0.25, 0.5, 1., -1., 1.5, 3.], np.float32), size=400)
  rows = [tf.constant(row) for row in x]
  for k in range(1, n + 1):
    finite = np.isfinite(x).sum(axis=0) >= k  # the reference's sum is +inf elsewhere, and so is the rule's
    expected = np.array([closest_values_sum(x[:, j], centers[j], k) for j in range(x.shape[1])])
    got = ops.sum_of_closest_rows(rows, tf.constant(centers), k).numpy()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6, atol=1e-4, err_msg=f"k={k}")  # float32 sums of up to 67 values
    assert np.isinf(got[~finite]).all()


def test_column_sums_adds_an_elementwise_function_of_each_row():
  x = tf.constant([[1., -2.], [3., nan], [-4., 5.]])
  np.testing.assert_array_equal(ops.column_sums(tf.abs, x).numpy()[0], 8.)
  big = tf.ones([ops.COLUMN_SUMS_MAX_ROWS + 1, 2])
  np.testing.assert_array_equal(ops.column_sums(tf.negative, big).numpy(), [-(ops.COLUMN_SUMS_MAX_ROWS + 1.)] * 2)


def large_input(n: int, d: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=(n, d)) * np.exp(rng.normal(size=(n, 1)))).astype(np.float32)
  x[0, ::7], x[1, 1::9], x[0, 3::11] = nan, inf, -inf  # f = 2 non-finite rows
  return x


@pytest.mark.parametrize("name", FUSED_RULES)
def test_fused_and_plain_runs_agree_bit_for_bit(name, monkeypatch):
  # The same rule compiled with XLA (one fused pass) and as plain ops, which ops.fused picks by size.
  n, f = 11, 2
  x = tf.constant(large_input(n, 3000, seed=1))
  monkeypatch.setattr(ops, "FUSE_MIN_SIZE", 1)
  compiled = gars.get(name).aggregate(x, f).numpy()
  monkeypatch.setattr(ops, "FUSE_MIN_SIZE", 1 << 62)
  plain = gars.get(name).aggregate(x, f).numpy()
  np.testing.assert_array_equal(compiled, plain)
  assert np.isfinite(plain).all()


@pytest.mark.parametrize("name", FUSED_RULES)
def test_fused_rule_nested_in_tf_function_and_in_a_replica(name):
  n, f = 11, 2
  x = tf.constant(large_input(n, ops.FUSE_MIN_SIZE // n + 1, seed=2))
  expected = gars.get(name).aggregate(x, f).numpy()
  rule = gars.get(name)
  np.testing.assert_array_equal(tf.function(lambda g: rule.aggregate(g, f))(x).numpy(), expected)
  np.testing.assert_allclose(tf.function(lambda g: rule.aggregate(g, f), jit_compile=True)(x).numpy(), expected,
                             rtol=1e-6)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  outputs = strategy.run(tf.function(lambda: rule.aggregate(x, f)))
  for output in strategy.experimental_local_results(outputs):
    np.testing.assert_array_equal(output.numpy(), expected)


def closest_values_reference(name: str, x: np.ndarray, f: int, mask: np.ndarray | None) -> np.ndarray:
  """Brute force of a rule whose last step averages the values closest to a center, column by column."""
  if name == "bulyan":  # the last step, on the rows the rule selected
    x = x[mask.astype(bool)]
    k = x.shape[0] - 2 * f
  else:
    k = x.shape[0] - f
  s = np.sort(np.where(np.isfinite(x), x, inf), axis=0).astype(x.dtype)
  n = s.shape[0]
  if name == "phocas":  # the f-trimmed mean, rounded as the rule rounds it
    total = s[f]
    for row in s[f + 1:n - f]:
      total = total + row
    centers = total * x.dtype.type(1 / (n - 2 * f))
  else:
    centers = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / x.dtype.type(2)
  return np.array([closest_values_sum(s[:, j], centers[j], k) for j in range(s.shape[1])]) / k


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("name,n,f", [("averaged-median", 5, 1), ("averaged-median", 12, 3), ("phocas", 7, 2),
                                      ("phocas", 10, 4), ("bulyan", 11, 2), ("bulyan", 15, 3),
                                      ("averaged-median", ops.SORTING_NETWORK_MAX_ROWS + 3, 20)])
def test_closest_value_rules_match_brute_force_with_repeats_and_zeros(name, n, f, fuse, monkeypatch):
  # A mimic attacker repeats an honest row, sparse gradients hold exact zeros: the repeated value must never
  # stand in for a closer one, in the XLA pass (fuse) or the plain ops.
  rng = np.random.default_rng(n * 10 + f)
  d = 600
  x = rng.choice(np.array([0., 0., 0., 0., 1., -1., 0.5, 2., 3.], np.float32), size=(n, d))
  x[:, :200] = rng.normal(size=(n, 200)).round(1)
  x[:f] = x[f]  # f copies of one worker
  x[-1, ::5] = np.nan  # a non-finite value in some columns
  monkeypatch.setattr(ops, "FUSE_MIN_SIZE", 1 if fuse else 1 << 62)
  rule = gars.get(name)
  if rule.selects:
    out, mask = rule.aggregate_and_select(x, f=f)
    mask = mask.numpy()
  else:
    out, mask = rule.aggregate(x, f=f), None
  np.testing.assert_allclose(out.numpy(), closest_values_reference(name, x, f, mask), rtol=1e-6, atol=1e-5)


def test_averaged_median_of_the_issue_example():
  x = np.array([[0.], [0.], [0.9], [1.], [1.5]], np.float64)
  np.testing.assert_allclose(gars.get("averaged-median").aggregate(x, f=1).numpy(), [0.85])


def test_widest_network_compiles_and_sorts_exactly(monkeypatch):
  # The largest n that still runs as one XLA pass: the median and the trimmed mean as numpy computes them.
  n, f = ops.SORTING_NETWORK_MAX_ROWS, 5
  x = large_input(n, 700, seed=3)
  monkeypatch.setattr(ops, "FUSE_MIN_SIZE", 1)
  s = np.sort(np.where(np.isfinite(x), x, inf), axis=0)
  np.testing.assert_array_equal(gars.get("median").aggregate(x, f).numpy(), (s[n // 2 - 1] + s[n // 2]) / 2)
  np.testing.assert_allclose(gars.get("trimmed-mean").aggregate(x, f).numpy(), s[f:n - f].mean(axis=0), rtol=1e-5,
                             atol=1e-6)


def test_xla_cpu_flags_are_asked_for_unless_xla_flags_chooses():
  vectorizer = f"--xla_backend_extra_options=-vectorize-memory-check-threshold={ops.VECTORIZE_MEMORY_CHECK_THRESHOLD}"
  assert {"--xla_cpu_use_fusion_emitters=false", vectorizer} <= set(os.environ["XLA_FLAGS"].split())
  script = "import os, aggregathor.ops; print(os.environ['XLA_FLAGS'])"

  def flags_after_import(xla_flags: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", script], env={**os.environ, "XLA_FLAGS": xla_flags},
                          capture_output=True, text=True, check=True, timeout=120).stdout.split()

  assert flags_after_import("--xla_cpu_use_fusion_emitters=true") == ["--xla_cpu_use_fusion_emitters=true", vectorizer]
  mine = "--xla_backend_extra_options=-some-llvm-option=1"
  assert flags_after_import(mine) == [mine, "--xla_cpu_use_fusion_emitters=false"]


def test_a_256_row_network_is_vectorised(tmp_path):
  # LLVM gives up vectorising a loop past its default 128 run-time memory checks: 256 rows then ran
  # scalar, 3x slower. The compiled module's IR must hold vector minima.
  script = ("import numpy as np, tensorflow as tf\n"
            "from aggregathor import ops\n"
            "x = tf.constant(np.random.default_rng(0).standard_normal((256, 1024), np.float32))\n"
            "tf.function(lambda g: ops.median_of_rows(ops.sorted_rows(g)), jit_compile=True)(x).numpy()\n")
  env = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={tmp_path} --xla_dump_hlo_as_text"}
  subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=300)
  (module,) = [path for path in tmp_path.glob("*.ir-with-opt.ll") if "XlaMustCompile" in path.name]
  assert "<8 x float>" in module.read_text() or "<16 x float>" in module.read_text()
