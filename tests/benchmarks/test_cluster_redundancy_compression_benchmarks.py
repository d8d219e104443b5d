"""Smoke tests of benchmarks/cluster.py, redundancy.py and compression.py: tiny runs print their tables."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
  # On the embedded digits (no data folder), as a user without the datasets would.
  environment = {**os.environ, "AGGREGATHOR_DATA": "/nonexistent", "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                        timeout=600, check=False, env=environment)


def test_cluster_benchmark_compares_the_transports_with_local_mode():
  result = _run("cluster.py", "--workers", "2", "--rules", "average", "--steps", "25")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| 2 | average |" in result.stdout and "loopback bandwidth" in result.stdout, result.stdout
  assert all(f"n=2 average {transport}:" in result.stdout for transport in ("local", "grpc", "tf"))


def test_redundancy_benchmark_prints_accuracy_against_q_and_the_cost():
  result = _run("redundancy.py", "--q", "0,6", "--steps", "5", "--total-batch", "150")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| 0 |" in result.stdout and "gradients computed per step: baseline 15, detox 15, mols 75" in result.stdout
  # At q=6, DETOX's 3 distorted files of 5 are more than median tolerates: shown as "-".
  assert "| 6 |" in result.stdout and "- (3/5)" in result.stdout, result.stdout


def test_compression_benchmark_prints_accuracy_and_bytes_for_each_compressor():
  result = _run("compression.py", "--workers", "5", "--steps", "4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| sync | adacomp |" in result.stdout and "| async | adacomp |" in result.stdout, result.stdout
  assert "AdaComp against ASGD:" in result.stdout and "| sync, little | 2bit |" in result.stdout
