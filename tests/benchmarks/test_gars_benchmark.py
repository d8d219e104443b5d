"""Smoke test of benchmarks/gars.py: its --quick run times every registered rule and prints a full table."""

from __future__ import annotations

import pytest

from aggregathor import gars


def test_quick_run_has_every_rule_and_both_floors(capsys, load_benchmark):
  benchmark = load_benchmark("gars")
  rows = benchmark.main(["--quick", "--sizes", "8x64", "--repeats", "1", "--warmup", "0"])
  printed = capsys.readouterr().out
  names = {row.rule for row in rows}
  assert names == set(gars.names()) | {"floor:read", "floor:gram"}
  for row in rows:
    assert (row.n, row.d) == (8, 64)
    assert row.ms is not None and row.ms > 0, f"{row.rule} failed: {row.error}"
    assert row.rule in printed
  # The targets are attached to the rules they name, with a verdict.
  by_name = {row.rule: row for row in rows}
  assert (by_name["median"].floor, by_name["median"].target) == ("read", 3.)
  assert (by_name["bulyan"].floor, by_name["bulyan"].target) == ("gram", 2.)
  assert (by_name["geometric-median"].floor, by_name["geometric-median"].target) == ("read", 10.)
  assert by_name["krum"].status in ("PASS", "MISS")


def test_rules_that_check_refuses_are_left_out(load_benchmark):
  benchmark = load_benchmark("gars")
  # f = floor((32-3)/4) = 7: mda's exact search over C(32, 7) subsets is refused by check().
  rows = benchmark.benchmark_size(32, 16, ["mda", "median"], repeats=1, warmup=0, jit=False, seed=0)
  assert {row.rule for row in rows} == {"floor:read", "floor:gram", "median"}


def test_bad_sizes_are_refused(load_benchmark):
  benchmark = load_benchmark("gars")
  with pytest.raises(SystemExit):
    benchmark.main(["--sizes", "8by100"])
