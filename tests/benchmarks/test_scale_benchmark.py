"""Smoke test of benchmarks/scale.py: a tiny grid gives times, peak memory and fits; the fit recovers a power law."""

from __future__ import annotations

import math

import pytest


def test_quick_grid_times_and_measures_each_rule_and_prints_fits(capsys, load_benchmark):
  benchmark = load_benchmark("scale")
  points = benchmark.main(["--quick", "--rules", "median,krum", "--n", "8,16", "--d", "500,2000",
                           "--warmup", "0"])
  printed = capsys.readouterr().out
  assert {(p.rule, p.n, p.d) for p in points} == {(rule, n, d) for rule in ("floor:read", "floor:gram", "median", "krum")
                                                  for n in (8, 16) for d in (500, 2000)}
  for p in points:
    assert p.ms is not None and p.ms > 0
    if not p.rule.startswith("floor:"):
      assert p.status.startswith(("PASS", "MISS"))
      if p.d == 2000:  # memory at the largest d of each n, each rule in a fresh process
        assert p.peak is not None and p.peak >= 1 and p.memory_status in ("PASS", "MISS")
      else:
        assert p.peak is None
  assert "fitted t" in printed and "n^2 d^1" in printed


def test_peak_counts_what_a_rule_allocates_beyond_its_input(load_benchmark):
  benchmark = load_benchmark("scale")
  # The mean allocates one row (about 1x its input); the median of 257 rows, past the widest sorting network,
  # holds tf.sort's sorted copy and its non-finite-free input (above 2x). Compiling is counted apart.
  ratio, compile_mb = benchmark.peak_in_fresh_process("average", 8, 1_000_000, seed=0)
  assert ratio < 1.5 and compile_mb >= 0
  assert benchmark.peak_in_fresh_process("median", 257, 100_000, seed=0)[0] > 2


def test_fit_recovers_the_exponents_of_a_power_law(load_benchmark):
  benchmark = load_benchmark("scale")
  points = [benchmark.Point("r", n, d, 3e-6 * n ** 2 * d ** 1.0) for n in (8, 32, 128) for d in (1e5, 1e6)]
  a, b = benchmark.fit_exponents(points)
  assert math.isclose(a, 2, abs_tol=1e-9) and math.isclose(b, 1, abs_tol=1e-9)
  assert benchmark.fit_exponents(points[:1]) is None  # one size: nothing to fit


def test_targets_widen_where_the_issue_says(load_benchmark):
  benchmark = load_benchmark("scale")
  assert benchmark.time_target("median", 64, 3.) == (None, 3.)
  assert benchmark.time_target("median", 128, 3.) == (None, 8.)
  assert benchmark.time_target("krum", 256, 2.) == (None, 2.)
  assert benchmark.time_target("geometric-median", 32, 10.) == (None, 10.)
  assert benchmark.time_target("geometric-median", 64, 10.) == ("gram", 1.5)


@pytest.mark.parametrize("argv", [["--n", "8,x"], ["--d", "0"], ["--max-bytes", "-1"]])
def test_bad_flags_are_refused(argv, load_benchmark):
  benchmark = load_benchmark("scale")
  with pytest.raises(SystemExit):
    benchmark.main(argv)
