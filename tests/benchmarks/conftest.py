"""Fixtures for the benchmark tests: loading a script of benchmarks/ as a module."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types
from typing import Callable

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark() -> Callable[[str], types.ModuleType]:
  """load_benchmark("gars") -> benchmarks/gars.py as the module benchmarks_gars."""
  def load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module

  return load
