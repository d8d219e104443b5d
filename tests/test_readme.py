"""The README's Python examples run as they are, each in a fresh process (as a user would paste them)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_examples():
  assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
  # A fresh process whose TensorFlow has not started: the strategy example relies on that, not on conftest's split.
  environment = {**os.environ, "PYTHONPATH": str(README.parent), "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  if "StudyCallback(strategy, \"study.tsv\"" in BLOCKS[index]:
    assert len((tmp_path / "study.tsv").read_text(encoding="utf-8").splitlines()) > 1
