#!/usr/bin/env python3
"""Training throughput of ByzantineStrategy against plain MirroredStrategy (mean all-reduce).

The AggregaThor MLP (784-100-10) on MNIST-sized random data, n workers on
logical CPUs, Keras `fit`. Each configuration is timed in rounds, interleaved
with the others so that a slow moment of the machine hits all of them; the
median steps/s over the rounds is compared with MirroredStrategy's.
Targets: overhead <= 10% for multi-krum and <= 25% for bulyan.

  python benchmarks/overhead.py                 # n=8, per-worker batch 256
  python benchmarks/overhead.py --rounds 3 --steps 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGETS = {"multi-krum": 0.10, "bulyan": 0.25}


def main(argv=None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--nb-workers", type=int, default=8)
  parser.add_argument("--batch-size", type=int, default=256, help="per worker")
  parser.add_argument("--rules", nargs="*", default=["average", "multi-krum", "median", "bulyan"])
  parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=5)
  flags = parser.parse_args(argv)

  import strategies  # pylint: disable=g-import-not-at-top
  devices = strategies.configure_devices(flags.nb_workers)
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  n = flags.nb_workers
  f = max(1, (n - 3) // 4)
  rng = np.random.default_rng(0)
  x = rng.random((n * flags.batch_size * 4, 784), dtype=np.float32)
  y = rng.integers(0, 10, len(x))
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(n * flags.batch_size, drop_remainder=True)
  dataset = dataset.repeat().prefetch(tf.data.AUTOTUNE)

  configs = {"mirrored": lambda: tf.distribute.MirroredStrategy(devices)}
  for rule in flags.rules:
    configs[rule] = lambda rule=rule: strategies.ByzantineStrategy(rule, n, f, devices=devices)
  models = {}
  for name, make in configs.items():
    strategy = make()
    with strategy.scope():
      model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(100, activation="relu"),
                                keras.layers.Dense(10)])
      model.compile(optimizer=keras.optimizers.SGD(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)  # trace and warm up
    models[name] = model
  rates: dict[str, list[float]] = {name: [] for name in configs}
  for _ in range(flags.rounds):
    for name, model in models.items():
      started = time.perf_counter()
      model.fit(dataset, steps_per_epoch=flags.steps, epochs=1, verbose=0)
      rates[name].append(flags.steps / (time.perf_counter() - started))
  baseline = statistics.median(rates["mirrored"])
  print(f"n={n} workers, f={f}, per-worker batch {flags.batch_size}, MLP 784-100-10; "
        f"median of {flags.rounds} rounds of {flags.steps} steps")
  print(f"{'strategy':<12} {'steps/s':>8} {'ratio':>6} {'overhead':>9} {'target':>7}")
  ratios = {}
  for name in configs:
    rate = statistics.median(rates[name])
    ratios[name] = rate / baseline
    overhead = baseline / rate - 1
    target = TARGETS.get(name)
    verdict = "" if target is None else f"<= {target:.0%} {'PASS' if overhead <= target else 'MISS'}"
    print(f"{name:<12} {rate:8.2f} {rate / baseline:6.2f} {overhead:9.1%} {verdict:>7}")
  return ratios


if __name__ == "__main__":
  main()
