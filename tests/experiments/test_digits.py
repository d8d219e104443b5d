"""The embedded default experiment: scikit-learn's 8x8 digits, no network, no files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import experiments


@pytest.fixture(scope="module")
def digits():
  return experiments.get("digits")


def test_load(digits):
  data = digits.load()
  assert data.x_train.shape == (1438, 8, 8, 1) and data.x_test.shape == (359, 8, 8, 1)  # 1,797 digits, 20% test
  assert data.x_train.dtype == np.float32 and data.x_train.min() == 0.0 and data.x_train.max() == 1.0
  assert data.num_classes == 10 and data.input_shape == (8, 8, 1)
  assert set(data.y_train.tolist()) == set(range(10)) and set(data.y_test.tolist()) == set(range(10))
  assert digits.load() is data  # cached


def test_split_is_fixed_and_disjoint():
  first, second = experiments.get("digits").load(), experiments.get("digits").load()
  np.testing.assert_array_equal(first.x_test, second.x_test)
  train_rows = {row.tobytes() for row in first.x_train}
  # The optdigits set holds a few exact duplicates, hence "almost all" test digits absent from train.
  assert sum(row.tobytes() not in train_rows for row in first.x_test) > 0.95 * len(first.x_test)


def test_data_dir_is_accepted_and_unused():
  assert experiments.get("digits", **{"data-dir": "/nonexistent"}).load().x_train.shape[0] == 1438


def test_the_mlp_learns_digits_through_the_worker_pipeline(digits):
  keras.utils.set_random_seed(0)
  model = digits.build_model()
  model.compile(optimizer=keras.optimizers.Adam(0.01), loss=digits.loss(), metrics=digits.metrics())
  model.fit(digits.train_dataset(nb_workers=4, seed=0), steps_per_epoch=150, epochs=1, shuffle=False, verbose=0)
  _, accuracy = model.evaluate(digits.test_dataset(), verbose=0)
  assert accuracy > 0.9


def test_flipping_every_worker_teaches_the_flipped_labels(digits):
  keras.utils.set_random_seed(0)
  model = digits.build_model()
  model.compile(optimizer=keras.optimizers.Adam(0.01), loss=digits.loss(), metrics=digits.metrics())
  model.fit(digits.train_dataset(nb_workers=2, flipped_workers=(0, 1)), steps_per_epoch=150, epochs=1, shuffle=False, verbose=0)
  data = digits.load()
  predicted = np.argmax(model.predict(data.x_test, verbose=0), axis=1)
  assert np.mean(predicted == 9 - data.y_test) > 0.9
