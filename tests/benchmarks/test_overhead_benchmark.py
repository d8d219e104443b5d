"""Smoke test of benchmarks/overhead.py: a tiny run times every configuration and prints a verdict per target.

In a subprocess, as users run it: the benchmark splits the CPU into its own
logical devices, and its MirroredStrategy instances must not share collective
group keys with those of the tests that run in this process.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                        check=False)


def test_tiny_run_times_both_baselines_and_each_rule():
  result = _run("--nb-workers", "7", "--batch-size", "4", "--rules", "average", "bulyan", "--steps", "3",
                "--warmup-steps", "1", "--rounds", "1")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {match[1]: float(match[2]) for match in re.finditer(r"^(\S+)\s+(\d+\.\d\d)\s", result.stdout, re.MULTILINE)}
  assert set(rows) == {"mirrored", "mirrored-ps", "average", "bulyan"}, result.stdout
  assert all(rate > 0 for rate in rows.values())
  assert re.search(r"^bulyan .*<= 25% (PASS|MISS)$", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--warmup-steps", "-1"], ["--rounds", "0"]])
def test_bad_flags_are_refused(argv):
  result = _run(*argv)
  assert result.returncode == 2 and "error: --" in result.stderr
