"""Smoke test of benchmarks/overhead.py: a tiny run times every configuration and prints a verdict per target."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


def load_benchmark():
  spec = importlib.util.spec_from_file_location("benchmarks_overhead", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_tiny_run_times_both_baselines_and_each_rule(capsys):
  benchmark = load_benchmark()
  rates = benchmark.main(["--nb-workers", "7", "--batch-size", "4", "--rules", "average", "bulyan",
                          "--steps", "3", "--warmup-steps", "1", "--rounds", "1"])
  printed = capsys.readouterr().out
  assert set(rates) == {"mirrored", "mirrored-ps", "average", "bulyan"}
  assert all(rate > 0 for rate in rates.values())
  assert "bulyan" in printed and ("<= 25% PASS" in printed or "<= 25% MISS" in printed)


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--warmup-steps", "-1"], ["--rounds", "0"]])
def test_bad_flags_are_refused(argv):
  with pytest.raises(SystemExit):
    load_benchmark().main(argv)
