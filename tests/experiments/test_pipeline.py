"""Worker splits, label flipping and the tf.data pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from experiments import Data
from experiments.pipeline import flip_labels, split_workers, test_dataset as make_test_dataset, train_dataset
from experiments.pipeline import worker_dataset


def _flat(parts):
  return np.concatenate(parts)


def test_iid_split_sizes_and_partition():
  parts = split_workers(np.zeros(10, dtype=np.int64), 3)
  assert [len(p) for p in parts] == [4, 3, 3]
  assert sorted(_flat(parts).tolist()) == list(range(10))


def test_iid_split_is_shuffled_and_seeded():
  labels = np.zeros(100, dtype=np.int64)
  first = split_workers(labels, 4, seed=1)
  assert first[0].tolist() != list(range(25))  # not the identity cut
  again = split_workers(labels, 4, seed=1)
  other = split_workers(labels, 4, seed=2)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def _class_shares(labels, parts, num_classes):
  """(workers, classes) fraction of each worker's examples in each class."""
  counts = np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
  return counts / counts.sum(axis=1, keepdims=True)


def test_dirichlet_split_covers_every_index_once_and_is_skewed():
  labels = np.repeat(np.arange(10), 100)  # balanced: each class is 10% of the data
  parts = split_workers(labels, 5, alpha=0.05, seed=0)
  assert sorted(_flat(parts).tolist()) == list(range(1000))
  assert all(len(p) > 0 for p in parts)
  # Small alpha: each worker is dominated by few classes, far from the 10% of iid.
  assert _class_shares(labels, parts, 10).max(axis=1).mean() > 0.4
  # Large alpha: close to iid.
  near_iid = split_workers(labels, 5, alpha=1000.0, seed=0)
  assert sorted(_flat(near_iid).tolist()) == list(range(1000))
  assert _class_shares(labels, near_iid, 10).max() < 0.15


def test_dirichlet_split_is_seeded():
  labels = np.repeat(np.arange(4), 25)
  first, again = split_workers(labels, 3, 0.5, seed=7), split_workers(labels, 3, 0.5, seed=7)
  other = split_workers(labels, 3, 0.5, seed=8)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_dirichlet_split_that_cannot_feed_every_worker_says_so():
  # Two classes, tiny alpha: each class lands almost whole on one worker, so 5 workers never all get data.
  labels = np.repeat(np.arange(2), 50)
  with pytest.raises(ValueError, match="left a worker without examples"):
    split_workers(labels, 5, alpha=1e-3)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(3, dtype=np.int64), 4), "cannot give each of 4 workers"),
    ((np.zeros(3, dtype=np.int64), 0), "nb_workers must be an int >= 1"),
    ((np.zeros(3), 1), "integer labels"),
    ((np.zeros(3, dtype=np.int64), 1, 0.0), "alpha must be a positive number"),
])
def test_split_bad_inputs(args, match):
  with pytest.raises(ValueError, match=match):
    split_workers(*args)


def test_flip_labels():
  assert flip_labels(np.array([0, 1, 9, 4]), 10).tolist() == [9, 8, 0, 5]
  assert flip_labels(np.array([0, 1]), 2).tolist() == [1, 0]
  with pytest.raises(ValueError, match=r"\[0, 10\)"):
    flip_labels(np.array([10]), 10)


# A dataset whose images encode their own index: x[i] is filled with i, so a batch says where it came from.
NB, CLASSES = 24, 4


@pytest.fixture(scope="module")
def indexed():
  x = np.repeat(np.arange(NB, dtype=np.uint8), 4).reshape(NB, 2, 2, 1)
  y = np.arange(NB) % CLASSES
  return Data(x, y, x[:10], y[:10], CLASSES, (2, 2, 1))


def _indices(x):
  return np.round(x.numpy()[:, 0, 0, 0] * 255).astype(int)


def test_train_batches_are_worker_slices_in_order(indexed):
  nb_workers, batch = 3, 2
  flipped = (1,)
  shares = split_workers(indexed.y_train, nb_workers, seed=5)
  dataset = train_dataset(indexed, nb_workers, batch, flipped_workers=flipped, seed=5)
  seen = [[] for _ in range(nb_workers)]
  # 8 examples per worker, 2 per batch: 4 batches are exactly one epoch of each worker's share.
  for x, y in dataset.take(4):
    assert x.shape == (6, 2, 2, 1) and x.dtype == tf.float32 and y.shape == (6,)
    indices, labels = _indices(x), y.numpy()
    for worker in range(nb_workers):
      part = slice(worker * batch, (worker + 1) * batch)
      seen[worker] += indices[part].tolist()
      expected = indices[part] % CLASSES
      if worker in flipped:
        expected = CLASSES - 1 - expected
      assert labels[part].tolist() == expected.tolist()
  for worker in range(nb_workers):
    assert sorted(seen[worker]) == shares[worker].tolist()


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_worker_dataset_is_that_workers_slice_of_the_global_batches(indexed, alpha):
  # What a worker process trains on: the same examples, labels and order as its slice in local mode.
  nb_workers, batch = 3, 2
  global_batches = list(train_dataset(indexed, nb_workers, batch, alpha, flipped_workers=(2,), seed=4).take(9))
  for worker in range(nb_workers):
    own = list(worker_dataset(indexed, nb_workers, batch, worker, alpha, flipped_workers=(2,), seed=4).take(9))
    for (x, y), (own_x, own_y) in zip(global_batches, own, strict=True):
      part = slice(worker * batch, (worker + 1) * batch)
      np.testing.assert_array_equal(own_x.numpy(), x.numpy()[part])
      np.testing.assert_array_equal(own_y.numpy(), y.numpy()[part])
      assert own_x.dtype == tf.float32
  with pytest.raises(ValueError, match="worker 3 out of range for 3 workers"):
    worker_dataset(indexed, nb_workers, batch, 3)


def test_train_dataset_is_infinite_seeded_and_reshuffles(indexed):
  first = [_indices(x).tolist() for x, _ in train_dataset(indexed, 1, 24, seed=3).take(3)]
  again = [_indices(x).tolist() for x, _ in train_dataset(indexed, 1, 24, seed=3).take(3)]
  assert first == again
  assert all(sorted(epoch) == list(range(NB)) for epoch in first)
  assert first[0] != first[1]  # a new permutation each epoch


def test_non_iid_slices_come_from_each_worker_share(indexed):
  shares = split_workers(indexed.y_train, 2, alpha=0.5, seed=1)
  x, _ = next(iter(train_dataset(indexed, 2, 5, alpha=0.5, seed=1)))  # 5 may exceed a share: it repeats
  indices = _indices(x)
  assert set(indices[:5]) <= set(shares[0].tolist()) and set(indices[5:]) <= set(shares[1].tolist())


def test_mirrored_strategy_gives_replica_i_the_batch_of_worker_i(indexed):
  devices = [f"/cpu:{i}" for i in range(3)]
  strategy = tf.distribute.MirroredStrategy(devices)
  shares = split_workers(indexed.y_train, 3, seed=0)
  distributed = strategy.experimental_distribute_dataset(train_dataset(indexed, 3, 2, seed=0))
  x, _ = next(iter(distributed))
  for worker, local in enumerate(strategy.experimental_local_results(x)):
    assert local.shape[0] == 2
    assert set(_indices(local).tolist()) <= set(shares[worker].tolist())


def test_float_images_pass_through_unscaled():
  x = np.full((4, 1, 1, 1), 0.25, dtype=np.float32)
  data = Data(x, np.arange(4) % 2, x, np.arange(4) % 2, 2, (1, 1, 1))
  batch, _ = next(iter(train_dataset(data, 2, 1)))
  assert batch.numpy().ravel().tolist() == [0.25, 0.25]


def test_bad_train_arguments(indexed):
  with pytest.raises(ValueError, match=r"worker indices in \[0, 3\)"):
    train_dataset(indexed, 3, 2, flipped_workers=(3,))
  with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
    train_dataset(indexed, 3, 0)
  with pytest.raises(ValueError, match="expects an experiments Data"):
    train_dataset((indexed.x_train, indexed.y_train), 3, 2)


def test_test_dataset_is_finite_ordered_and_scaled(indexed):
  batches = list(make_test_dataset(indexed, 4))
  assert [len(y) for _, y in batches] == [4, 4, 2]
  assert np.concatenate([_indices(x) for x, _ in batches]).tolist() == list(range(10))
  assert np.concatenate([y.numpy() for _, y in batches]).tolist() == indexed.y_test.tolist()


def test_data_checks():
  x = np.zeros((3, 2, 2, 1), dtype=np.uint8)
  with pytest.raises(ValueError, match=r"labels in \[0, 5\], expected \[0, 3\)"):
    Data(x, np.array([0, 1, 5]), x, np.array([0, 1, 2]), 3, (2, 2, 1))
  with pytest.raises(ValueError, match="uint8 or float32"):
    Data(x.astype(np.float64), np.array([0, 1, 2]), x, np.array([0, 1, 2]), 3, (2, 2, 1))
  with pytest.raises(ValueError, match="expected input_shape"):
    Data(x, np.array([0, 1, 2]), x, np.array([0, 1, 2]), 3, (4, 1, 1))
