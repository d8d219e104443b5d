"""Test-wide TensorFlow set-up: split the CPU into logical devices, one per simulated worker.

TensorFlow fixes its logical devices when its runtime starts, so this runs once,
before any test touches TensorFlow.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

NB_LOGICAL_CPUS = 12

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * NB_LOGICAL_CPUS)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real MNIST / Fashion-MNIST IDX files that every developer machine and CI has."""
  if not (SHARED_DATA / "mnist").is_dir():
    pytest.fail(f"real datasets expected at {SHARED_DATA} (see the project's README)")
  return SHARED_DATA
