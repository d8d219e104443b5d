"""IDX reader: real MNIST / Fashion-MNIST files, raw and gzip, and the errors on bad files."""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import shutil

import numpy as np
import pytest

from experiments import idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


@pytest.fixture(scope="module")
def mnist(shared_data):
  return idx.load_idx_dir(shared_data / "mnist")


def test_real_mnist_shapes_and_label_counts(mnist):
  x_train, y_train, x_test, y_test = mnist
  assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
  assert y_train.shape == (60000,) and y_test.shape == (10000,)
  assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
  assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
  assert x_train.max() == 255 and x_train.min() == 0


def test_real_fashion_mnist_is_balanced(shared_data):
  x_train, y_train, x_test, y_test = idx.load_idx_dir(shared_data / "fashion-mnist")
  assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
  # Fashion-MNIST has 6,000 train and 1,000 test images per class.
  assert np.bincount(y_train).tolist() == [6000] * 10
  assert np.bincount(y_test).tolist() == [1000] * 10


def test_raw_and_gz_files_mixed_in_one_directory(shared_data, tmp_path, mnist):
  source = shared_data / "mnist"
  sums = dict(line.split()[::-1] for line in (source / "SHA256SUMS.raw").read_text().splitlines() if line)
  for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # raw
    raw = gzip.decompress((source / f"{name}.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == sums[name]
    (tmp_path / name).write_bytes(raw)
  for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # gz
    shutil.copy(source / f"{name}.gz", tmp_path)
  loaded = idx.load_idx_dir(tmp_path)
  for got, expected in zip(loaded, mnist):
    np.testing.assert_array_equal(got, expected)


def _images_bytes(magic=2051, dims=(2, 2, 3), payload=None):
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
  return header + (bytes(range(12)) if payload is None else payload)


def test_tiny_hand_made_file_raw_and_gz(tmp_path):
  (tmp_path / "a").write_bytes(_images_bytes())
  (tmp_path / "a.gz").write_bytes(gzip.compress(_images_bytes()))
  for path in (tmp_path / "a", tmp_path / "a.gz"):
    images = idx.read_images(path)
    assert images.shape == (2, 2, 3)
    assert images[1, 0].tolist() == [6, 7, 8]  # row-major after the 16-byte header


def test_bad_magic_says_what_was_expected(tmp_path):
  (tmp_path / "labels").write_bytes(_images_bytes())
  with pytest.raises(ValueError, match="bad magic number 2051, expected 2049 for labels"):
    idx.read_labels(tmp_path / "labels")


def test_size_mismatch_and_short_header(tmp_path):
  (tmp_path / "cut").write_bytes(_images_bytes()[:-1])
  with pytest.raises(ValueError, match=r"dims \(2, 2, 3\), i.e. 28 bytes, but the file has 27"):
    idx.read_images(tmp_path / "cut")
  (tmp_path / "short").write_bytes(b"\x00\x00\x08")
  with pytest.raises(ValueError, match="too short"):
    idx.read_images(tmp_path / "short")


def test_bad_gzip(tmp_path):
  (tmp_path / "x.gz").write_bytes(b"not gzip at all")
  with pytest.raises(ValueError, match="not a valid gzip file"):
    idx.read_images(tmp_path / "x.gz")


def test_missing_file_names_the_path_and_the_four_files(shared_data, tmp_path):
  for name in idx.FILES[:3]:
    shutil.copy(shared_data / "mnist" / f"{name}.gz", tmp_path)
  with pytest.raises(FileNotFoundError) as error:
    idx.load_idx_dir(tmp_path)
  message = str(error.value)
  assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
  assert all(name in message for name in idx.FILES)


def test_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
    idx.load_idx_dir(tmp_path / "nope")
