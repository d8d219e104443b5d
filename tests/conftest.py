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
# The real MNIST / Fashion-MNIST IDX files: $AGGREGATHOR_DATA, else ../shared/data beside the clone
# (every developer machine and CI has it). Without them the real-data tests are skipped, unless
# AGGREGATHOR_REQUIRE_DATA=1 (as .ci/run sets it) makes their absence a failure.
DATA_VARIABLE = "AGGREGATHOR_DATA"
SHARED_DATA = pathlib.Path(os.environ.get(DATA_VARIABLE) or REPO_ROOT.parent / "shared" / "data")
REQUIRE_DATA = os.environ.get("AGGREGATHOR_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The folder holding mnist/ and fashion-mnist/ as IDX files (see the project's README)."""
  if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "fashion-mnist").is_dir():
    message = (f"no real datasets at {SHARED_DATA}: set {DATA_VARIABLE} to a folder holding mnist/ and "
               "fashion-mnist/ as IDX files (see the README's Data section)")
    if REQUIRE_DATA:
      pytest.fail(message + "; AGGREGATHOR_REQUIRE_DATA is set, so this is a failure, not a skip")
    pytest.skip(message)
  return SHARED_DATA


# TensorFlow's teardown of the distributed input pipelines the tests built can stall the interpreter's exit for
# minutes (tf.data's iterator destructors wait on their per-device threads); by pytest_unconfigure every report
# is written, so the process ends there with pytest's exit status.
_EXIT_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
  _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
  if _EXIT_STATUS:
    import sys  # pylint: disable=import-outside-toplevel
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])  # pylint: disable=protected-access
