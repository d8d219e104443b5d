"""Input pipelines: split the training set across workers, flip Byzantine labels, batch with tf.data.

The training dataset yields GLOBAL batches of nb_workers * batch_size examples,
worker 0's batch first, then worker 1's, and so on. A tf.distribute strategy
with one replica per worker splits each global batch into equal contiguous
slices, so replica i trains on exactly worker i's share of the data.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow as tf

from experiments._data import Data

# Tries at drawing Dirichlet proportions that leave no worker empty before giving up.
MAX_DIRICHLET_DRAWS = 100


def _check_int(what: str, value: object, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
  return int(value)


def split_workers(labels: np.ndarray, nb_workers: int, alpha: float | None = None,
                  seed: int = 0) -> list[np.ndarray]:
  """Partitions the example indices among `nb_workers`: a list of sorted int64 index arrays.

  With `alpha` None the split is iid: a random permutation cut into near-equal
  parts (sizes differ by at most one). Otherwise it is non-iid: for each class,
  the proportions of its examples given to the workers are drawn from a
  symmetric Dirichlet(alpha); small alpha (e.g. 0.1) gives each worker few
  classes, large alpha approaches iid. This is the per-class form of the
  Dirichlet partition of Hsu, Qi and Brown, "Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification",
  arXiv:1909.06335 (2019), as used by Yurochkin et al. (ICML 2019) and Wang et
  al. (ICLR 2020). Draws that leave a worker empty are redrawn; needs
  nb_workers <= number of examples.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"split_workers expects 1-D integer labels, got shape {labels.shape} and dtype {labels.dtype}")
  nb_workers = _check_int("split_workers: nb_workers", nb_workers, 1)
  if nb_workers > len(labels):
    raise ValueError(f"split_workers: cannot give each of {nb_workers} workers an example out of {len(labels)}")
  rng = np.random.default_rng(seed)
  if alpha is None:
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), nb_workers)]
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha <= 0:
    raise ValueError(f"split_workers: alpha must be a positive number (or None for iid), got {alpha!r}")
  by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  for _ in range(MAX_DIRICHLET_DRAWS):
    parts: list[list[np.ndarray]] = [[] for _ in range(nb_workers)]
    for indices in by_class:
      proportions = rng.dirichlet(np.full(nb_workers, float(alpha)))
      cuts = np.round(np.cumsum(proportions)[:-1] * len(indices)).astype(np.int64)
      for worker, chunk in enumerate(np.split(indices, cuts)):
        parts[worker].append(chunk)
    shares = [np.sort(np.concatenate(chunks)) for chunks in parts]
    if all(len(share) for share in shares):
      return shares
  raise ValueError(f"split_workers: {MAX_DIRICHLET_DRAWS} Dirichlet(alpha={alpha}) draws all left a worker "
                   f"without examples ({nb_workers} workers, {len(labels)} examples); use a larger alpha or "
                   f"fewer workers")


def flip_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """The label-flipping data attack: y -> num_classes - 1 - y.

  Byzantine workers train honestly on deliberately wrong labels, as in Allen-Zhu,
  Ebrahimian, Li and Yuan, "Byzantine-Resilient Non-Convex Stochastic Gradient
  Descent" (ICLR 2021) and Karimireddy, He and Jaggi, "Byzantine-Robust Learning on
  Heterogeneous Datasets via Bucketing" (ICLR 2022).
  """
  labels = np.asarray(labels)
  num_classes = _check_int("flip_labels: num_classes", num_classes, 2)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"flip_labels expects integer labels, got dtype {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"flip_labels: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
  return (num_classes - 1 - labels).astype(labels.dtype)


def to_float(images: tf.Tensor) -> tf.Tensor:
  """uint8 images in [0, 255] -> float32 in [0, 1]; float32 images are already in [0, 1]."""
  if images.dtype == tf.uint8:
    return tf.cast(images, tf.float32) / 255.0
  return tf.cast(images, tf.float32)


def train_dataset(data: Data, nb_workers: int, batch_size: int, alpha: float | None = None,
                  flipped_workers: Iterable[int] = (), seed: int = 0) -> tf.data.Dataset:
  """Infinite dataset of global batches (x, y) of nb_workers * batch_size examples, in worker order.

  Worker i draws from its own share (`split_workers`), reshuffled every epoch;
  workers in `flipped_workers` see flipped labels (`flip_labels`). Images stay
  in memory once, as given, and become float32 in [0, 1] in the pipeline.
  Slice i of each global batch is batch i of `worker_dataset(..., worker=i)`.
  """
  per_worker = _worker_batches(data, nb_workers, batch_size, alpha, flipped_workers, seed, range(nb_workers))

  def concatenate(*batches: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    x = tf.concat([batch[0] for batch in batches], axis=0)
    y = tf.concat([batch[1] for batch in batches], axis=0)
    return to_float(x), y

  dataset = tf.data.Dataset.zip(tuple(per_worker)).map(concatenate, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def worker_dataset(data: Data, nb_workers: int, batch_size: int, worker: int, alpha: float | None = None,
                   flipped_workers: Iterable[int] = (), seed: int = 0) -> tf.data.Dataset:
  """Worker `worker`'s slices of `train_dataset`'s global batches alone: what a worker process trains on."""
  worker = _check_int("worker_dataset: worker", worker, 0)
  if worker >= nb_workers:
    raise ValueError(f"worker_dataset: worker {worker} out of range for {nb_workers} workers")
  dataset, = _worker_batches(data, nb_workers, batch_size, alpha, flipped_workers, seed, [worker])
  return dataset.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _worker_batches(data: Data, nb_workers: int, batch_size: int, alpha: float | None,
                    flipped_workers: Iterable[int], seed: int, workers: Iterable[int]) -> list[tf.data.Dataset]:
  """The batches of each of `workers`, images as stored (see `train_dataset`)."""
  if not isinstance(data, Data):
    raise ValueError(f"train_dataset expects an experiments Data, got {type(data).__name__}")
  nb_workers = _check_int("train_dataset: nb_workers", nb_workers, 1)
  batch_size = _check_int("train_dataset: batch_size", batch_size, 1)
  flipped = set()
  for worker in flipped_workers:
    if isinstance(worker, bool) or not isinstance(worker, (int, np.integer)) or not 0 <= worker < nb_workers:
      raise ValueError(f"train_dataset: flipped_workers must be worker indices in [0, {nb_workers}), got {worker!r}")
    flipped.add(int(worker))
  shares = split_workers(data.y_train, nb_workers, alpha, seed)
  # One copy, shared by the workers' pipelines, kept in host memory where tf.data runs (not on a GPU).
  with tf.device("/cpu:0"):
    images = tf.constant(data.x_train)

  def gather(indices: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.gather(images, indices), labels

  batches = []
  for worker in workers:
    share = shares[worker]
    labels = data.y_train[share]
    if worker in flipped:
      labels = flip_labels(labels, data.num_classes)
    dataset = tf.data.Dataset.from_tensor_slices((share, labels))
    # Shuffle before repeat: each epoch over the worker's share is a fresh permutation.
    dataset = dataset.shuffle(len(share), seed=seed * 1_000_003 + worker, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(batch_size, drop_remainder=True)
    batches.append(dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE))
  return batches


def test_dataset(data: Data, batch_size: int) -> tf.data.Dataset:
  """Finite dataset of the test split in order, batches (x, y) of `batch_size` (the last may be smaller)."""
  if not isinstance(data, Data):
    raise ValueError(f"test_dataset expects an experiments Data, got {type(data).__name__}")
  batch_size = _check_int("test_dataset: batch_size", batch_size, 1)
  dataset = tf.data.Dataset.from_tensor_slices((data.x_test, data.y_test)).batch(batch_size)
  return dataset.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
