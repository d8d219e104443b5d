"""Smoke test of benchmarks/accuracy.py: a few steps on the real MNIST files print one table row per rule.

In a subprocess, as users run it: the benchmark splits the CPU into its own 11 workers.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy.py"


def test_few_steps_print_a_row_per_rule_and_a_column_per_setting(shared_data):
  result = subprocess.run([sys.executable, str(SCRIPT), "--idx-dir", str(shared_data / "mnist"), "--rules", "average",
                           "krum", "--attacks", "none", "little", "--momentum-at", "update", "--steps", "20"],
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[1].split() == ["rule", "none/update", "little/update"]
  rows = {line.split()[0]: [float(value) for value in line.split()[1:]] for line in lines[2:]}
  assert set(rows) == {"average", "krum"}
  for accuracies in rows.values():
    assert len(accuracies) == 2 and all(0 <= accuracy <= 1 for accuracy in accuracies)
  assert rows["average"][0] > 0.5  # 20 steps lift the MLP well above chance (0.76 when written)
