"""MNIST and Fashion-MNIST experiments: real IDX files, and tfds failing fast offline."""

from __future__ import annotations

import time

import numpy as np
import pytest

import experiments
from experiments import DataUnavailableError, tfds_source

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


def test_mnist_from_idx_dir(shared_data):
  experiment = experiments.get("mnist", **{"idx-dir": str(shared_data / "mnist")})
  data = experiment.load()
  assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
  assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
  assert np.bincount(data.y_train).tolist() == MNIST_TRAIN_COUNTS
  x, y = next(iter(experiment.train_dataset(nb_workers=3, seed=0)))
  assert x.shape == (96, 28, 28, 1) and y.shape == (96,)  # 3 workers x default batch 32
  assert experiment.build_model()(x).shape == (96, 10)


def test_fashion_mnist_from_idx_dir(shared_data):
  data = experiments.get("fashion-mnist", **{"idx-dir": str(shared_data / "fashion-mnist")}).load()
  assert data.x_test.shape == (10000, 28, 28, 1)
  assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_idx_dir_without_the_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    experiments.get("mnist", **{"idx-dir": str(tmp_path)}).load()


@pytest.mark.parametrize("name, tfds_name", [("mnist", "mnist"), ("fashion-mnist", "fashion_mnist")])
def test_tfds_with_empty_data_dir_fails_fast_and_says_what_to_do(name, tfds_name, tmp_path, monkeypatch):
  checked = []
  monkeypatch.setattr(tfds_source, "reachable", lambda url, timeout=3.0: checked.append(url) or False)
  start = time.monotonic()
  with pytest.raises(DataUnavailableError) as error:
    experiments.get(name, **{"data-dir": str(tmp_path)}).load()
  assert time.monotonic() - start < 10
  assert checked == [experiments.get(name).download_url]
  message = str(error.value)
  assert repr(tfds_name) in message and str(tmp_path) in message
  assert "idx-dir:PATH" in message and "download_and_prepare" in message
  assert isinstance(error.value, ValueError)  # caught with the other user errors


def test_tfds_without_network_really_fails_fast(tmp_path):
  # The real check, no patching: this machine has no network (skip where the download host answers).
  if tfds_source.reachable(experiments.get("mnist").download_url, timeout=3.0):
    pytest.skip("the MNIST download host is reachable here; the test would download")
  start = time.monotonic()
  with pytest.raises(DataUnavailableError, match="is unreachable"):
    experiments.get("mnist", **{"data-dir": str(tmp_path)}).load()
  assert time.monotonic() - start < 10
