"""tensorflow-datasets loading: the reachability check, and reading an already prepared dataset offline."""

from __future__ import annotations

import importlib.resources
import importlib.util
import socket
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import DataUnavailableError, tfds_source


@pytest.fixture
def listening():
  server = socket.create_server(("127.0.0.1", 0))
  yield server.getsockname()[1]
  server.close()


def test_reachable_local_port(listening):
  assert tfds_source.reachable(f"http://127.0.0.1:{listening}/x")


def test_unreachable_port_and_host_fail_fast(listening):
  closed = socket.create_server(("127.0.0.1", 0))
  port = closed.getsockname()[1]
  closed.close()
  start = time.monotonic()
  assert not tfds_source.reachable(f"http://127.0.0.1:{port}/")
  assert not tfds_source.reachable("https://no-such-host.invalid/data", timeout=1.0)
  assert time.monotonic() - start < 5


def test_proxy_is_checked_instead_of_the_host(listening, monkeypatch):
  monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{listening}")
  monkeypatch.delenv("HTTPS_PROXY", raising=False)
  monkeypatch.delenv("no_proxy", raising=False)
  monkeypatch.delenv("NO_PROXY", raising=False)
  assert tfds_source.reachable("https://no-such-host.invalid/data", timeout=1.0)


class AggregathorTinyTest(tfds.core.GeneratorBasedBuilder):
  """A 9-example supervised dataset, prepared locally, to exercise the prepared-data path."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(4, 4, 1)),
                                             "label": tfds.features.ClassLabel(num_classes=3)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {"image": np.full((4, 4, 1), 10 * i, dtype=np.uint8), "label": i % 3}


HAS_IMPORTLIB_RESOURCES = importlib.util.find_spec("importlib_resources") is not None


def _tfds_finds_importlib_resources():
  # What tfds's own lazy import resolves to (it caches a success, e.g. the shim of the test below, hence this order).
  from tensorflow_datasets.core import dataset_builder  # pylint: disable=import-outside-toplevel
  try:
    return dataset_builder.importlib_resources.abc is not None
  except ModuleNotFoundError:
    return False


def test_preparing_without_importlib_resources_says_what_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "reachable", lambda url, timeout=3.0: True)
  if _tfds_finds_importlib_resources():  # installed: preparing works
    x_train, *_ = tfds_source.load("aggregathor_tiny_test", tmp_path, "https://unused.invalid/")
    assert x_train.shape == (6, 4, 4, 1)
  else:
    with pytest.raises(DataUnavailableError, match="pip install importlib_resources"):
      tfds_source.load("aggregathor_tiny_test", tmp_path, "https://unused.invalid/")


def test_prepared_dataset_loads_without_any_network_check(tmp_path, monkeypatch):
  with monkeypatch.context() as patch:
    if not HAS_IMPORTLIB_RESOURCES:  # tensorflow/datasets#11212: preparing needs it; loading must not
      patch.setitem(sys.modules, "importlib_resources", importlib.resources)
    tfds.builder("aggregathor_tiny_test", data_dir=str(tmp_path)).download_and_prepare()

  def no_network(url, timeout=3.0):
    raise AssertionError("a prepared dataset must not trigger a network check")
  monkeypatch.setattr(tfds_source, "reachable", no_network)
  x_train, y_train, x_test, y_test = tfds_source.load("aggregathor_tiny_test", tmp_path, "https://unused.invalid/")
  assert x_train.shape == (6, 4, 4, 1) and x_test.shape == (3, 4, 4, 1) and x_train.dtype == np.uint8
  # tfds may store the examples in any order; each image still carries its label.
  assert sorted(zip(x_train[:, 0, 0, 0].tolist(), y_train.tolist())) == [(10 * i, i % 3) for i in range(6)]
  assert sorted(y_test.tolist()) == [0, 1, 2]


def test_not_prepared_and_unreachable(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "reachable", lambda url, timeout=3.0: False)
  with pytest.raises(DataUnavailableError, match=r"'cifar10' is not prepared .* https://host.invalid/c10 is unreachable"):
    tfds_source.load("cifar10", tmp_path, "https://host.invalid/c10")
