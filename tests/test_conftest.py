"""tests/conftest.py's data set-up: a clone without the real datasets gets a passing suite, and CI never skips them."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REAL_DATA_TEST = "tests/experiments/test_mnist.py::test_mnist_from_idx_dir"


def _pytest(tmp_path: pathlib.Path, **variables: str) -> subprocess.CompletedProcess:
  environment = {key: value for key, value in os.environ.items() if not key.startswith("AGGREGATHOR_")}
  environment["AGGREGATHOR_DATA"] = str(tmp_path / "no-data")
  environment.update(variables)
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", REAL_DATA_TEST],
                        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False)


def test_real_data_tests_skip_naming_the_variable_without_the_data(tmp_path):
  result = _pytest(tmp_path)
  assert result.returncode == 0, result.stdout[-3000:]
  assert "1 skipped" in result.stdout
  assert f"no real datasets at {tmp_path / 'no-data'}: set AGGREGATHOR_DATA" in result.stdout


def test_real_data_tests_fail_without_the_data_when_required(tmp_path):
  result = _pytest(tmp_path, AGGREGATHOR_REQUIRE_DATA="1")
  assert result.returncode == 1 and "1 error" in result.stdout, result.stdout[-3000:]
  assert "AGGREGATHOR_REQUIRE_DATA is set, so this is a failure, not a skip" in result.stdout


def test_the_data_folder_comes_from_the_variable(tmp_path, shared_data):
  # The real files, through the variable: the test runs and passes.
  result = _pytest(tmp_path, AGGREGATHOR_DATA=str(shared_data), AGGREGATHOR_REQUIRE_DATA="1")
  assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]
