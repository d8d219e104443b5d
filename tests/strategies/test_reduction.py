"""Tests of `strategies.reduction`: how the workers' gradients become the (n, d) matrix."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from strategies import ByzantineStrategy, reduction

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(16, 5)).astype(np.float32)
Y = _RNG.integers(0, 3, 16)


@pytest.mark.parametrize("device, expected", [
    ("/job:localhost/replica:0/task:0/device:CPU:3", True), ("/device:CPU:0", True), ("", True),
    ("/job:localhost/replica:0/task:0/device:GPU:0", False), ("/device:TPU:1", False),
    ("/job:workers/replica:0/task:0/device:CPU:0", False), ("/job:localhost/replica:0/task:1/device:CPU:0", False)])
def test_on_host(device, expected):
  ps_device = "/job:localhost/replica:0/task:0/device:CPU:0"
  assert reduction._on_host(device, ps_device) is expected  # pylint: disable=protected-access


def _weights_after_fit(rule: str) -> list[np.ndarray]:
  devices = [device.name for device in tf.config.list_logical_devices("CPU")[:4]]
  strategy = ByzantineStrategy(rule, 4, 1, devices=devices)
  with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
  return model.get_weights()


@pytest.mark.parametrize("rule", ["average", "median"])
def test_rows_assembled_per_worker_as_from_accelerators_give_the_same_training(monkeypatch, rule):
  # On accelerators each worker's row is concatenated on its device, then the rows are stacked;
  # on CPUs all the parts are concatenated at once. Both are the same matrix.
  on_host = _weights_after_fit(rule)
  asked = []
  monkeypatch.setattr(reduction, "_on_host", lambda device, ps_device: asked.append(device) or False)
  per_worker = _weights_after_fit(rule)
  assert asked  # the per-worker branch was traced
  for got, expected in zip(per_worker, on_host, strict=True):
    np.testing.assert_array_equal(got, expected)
