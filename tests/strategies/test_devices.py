"""Tests of `strategies.devices`: worker devices on the 12 logical CPUs that tests/conftest.py sets up."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from strategies import configure_devices, worker_devices

NB_LOGICAL_CPUS = 12  # as in tests/conftest.py
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def started_runtime():
  # Listing the logical devices starts TensorFlow's runtime: configure_devices must then not change them.
  cpus = tf.config.list_logical_devices("CPU")
  assert len(cpus) == NB_LOGICAL_CPUS
  yield
  assert len(tf.config.list_logical_devices("CPU")) == NB_LOGICAL_CPUS


def cpu_names() -> list[str]:
  return [device.name for device in tf.config.list_logical_devices("CPU")]


def test_worker_devices_distinct():
  for n in (1, 4, NB_LOGICAL_CPUS):
    devices = worker_devices(n)
    assert len(devices) == n and len(set(devices)) == n
    if not tf.config.list_logical_devices("GPU"):
      assert devices == cpu_names()[:n]


def test_worker_devices_too_many():
  with pytest.raises(ValueError, match=re.escape("13 workers need one logical device each, found 12 CPU device(s); "
                                                 "call strategies.configure_devices(13)")):
    worker_devices(NB_LOGICAL_CPUS + 1)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "4"])
def test_worker_devices_bad_count(bad):
  with pytest.raises(ValueError, match=re.escape(f"expected nb_workers >= 1 as an int, got {bad!r}")):
    worker_devices(bad)


def test_configure_devices_after_start_reuses_existing():
  assert configure_devices(4) == cpu_names()[:4]
  assert configure_devices(NB_LOGICAL_CPUS) == cpu_names()


def test_configure_devices_after_start_too_many():
  message = ("13 workers need 13 logical CPU devices but TensorFlow already started with 12; call "
             "strategies.configure_devices(13) before any TensorFlow op runs")
  with pytest.raises(ValueError, match=re.escape(message)):
    configure_devices(NB_LOGICAL_CPUS + 1)


@pytest.mark.parametrize("bad", [0, -2, False, 1.5])
def test_configure_devices_bad_count(bad):
  with pytest.raises(ValueError, match=re.escape(f"expected nb_workers >= 1 as an int, got {bad!r}")):
    configure_devices(bad)


def test_configure_devices_gpu_without_gpu():
  if tf.config.list_physical_devices("GPU"):
    pytest.skip("this machine has a GPU")
  with pytest.raises(ValueError, match="use_gpu was asked but TensorFlow sees no GPU"):
    configure_devices(2, use_gpu=True)


FRESH_PROCESS = """
import os, sys
import tensorflow as tf
if sys.argv[1] == "started":
  tf.constant(1.0)  # starts the runtime with its default single CPU
import strategies
try:
  strategy = strategies.ByzantineStrategy("krum", 8, 1)
except ValueError as error:
  print("ValueError:", error)
else:
  print("replicas:", strategy.num_replicas_in_sync, len(tf.config.list_logical_devices("CPU")))
"""


def _fresh_process(mode: str) -> str:
  result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, mode], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip().splitlines()[-1]


def test_strategy_splits_the_cpu_itself_before_tensorflow_starts():
  # As with MirroredStrategy, a fresh program needs no configure_devices call.
  assert _fresh_process("fresh") == "replicas: 8 8"


def test_strategy_on_a_started_runtime_with_too_few_devices_says_what_to_do():
  line = _fresh_process("started")
  assert line.startswith("ValueError: 8 workers need one logical device each, found 1 CPU device(s)")
  assert "strategies.configure_devices(8) before any TensorFlow op runs" in line
