"""Reader of the IDX files in which MNIST and Fashion-MNIST are distributed.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header, a
32-bit magic number then one 32-bit size per dimension, then the unsigned bytes.
Images have magic 2051 and dims (N, rows, cols); labels magic 2049 and dims (N,).
Files are read raw or gzip-compressed (`.gz`).
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
# The four standard names, in the order load_idx_dir returns their arrays.
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_bytes(path: pathlib.Path) -> bytes:
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as stream:
      return stream.read()
  except (gzip.BadGzipFile, EOFError) as error:
    raise ValueError(f"{path}: not a valid gzip file ({error})") from None


def parse_idx(raw: bytes, magic: int, ndim: int, source: str = "IDX data") -> np.ndarray:
  """The uint8 array of IDX bytes, checked against the expected magic and number of dims."""
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise ValueError(f"{source}: {len(raw)} bytes is too short for an IDX header of {header_size} bytes")
  found = int.from_bytes(raw[:4], "big")
  if found != magic:
    kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(magic, "IDX")
    raise ValueError(f"{source}: bad magic number {found}, expected {magic} for {kind} "
                     f"(is it the right file, and decompressed if it does not end in .gz?)")
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = header_size + int(np.prod(dims, dtype=np.int64))
  if len(raw) != expected:
    raise ValueError(f"{source}: header announces dims {dims}, i.e. {expected} bytes, but the file has "
                     f"{len(raw)} (truncated or corrupted?)")
  return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_images(path: str | os.PathLike) -> np.ndarray:
  """(N, rows, cols) uint8 images from an IDX file (magic 2051)."""
  path = pathlib.Path(path)
  return parse_idx(_read_bytes(path), IMAGES_MAGIC, 3, str(path))


def read_labels(path: str | os.PathLike) -> np.ndarray:
  """(N,) uint8 labels from an IDX file (magic 2049)."""
  path = pathlib.Path(path)
  return parse_idx(_read_bytes(path), LABELS_MAGIC, 1, str(path))


def find(directory: str | os.PathLike, name: str) -> pathlib.Path:
  """The path of `name` or `name.gz` in `directory`; a clear FileNotFoundError if neither exists."""
  directory = pathlib.Path(directory)
  for candidate in (directory / name, directory / f"{name}.gz"):
    if candidate.is_file():
      return candidate
  raise FileNotFoundError(
      f"IDX file {directory / name} (or {name}.gz) not found; an IDX directory must hold the four files "
      f"{', '.join(FILES)} (each raw or .gz), as in the MNIST / Fashion-MNIST releases")


def load_idx_dir(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x_train, y_train, x_test, y_test) from the four standard IDX files of `directory`."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"IDX directory {directory} does not exist; it must hold {', '.join(FILES)} "
                            f"(each raw or .gz)")
  paths = [find(directory, name) for name in FILES]
  x_train, x_test = read_images(paths[0]), read_images(paths[2])
  y_train, y_test = read_labels(paths[1]), read_labels(paths[3])
  for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
    if len(images) != len(labels):
      raise ValueError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(f"{directory}: train images are {x_train.shape[1:]} but t10k images {x_test.shape[1:]}")
  return x_train, y_train, x_test, y_test
