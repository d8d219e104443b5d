"""Bucketing, a pre-aggregation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from aggregathor import gars


@gars.register
class Bucketing(gars.PreAggregation):
  """Bucketing: gradients shuffled into buckets of `s`, each bucket averaged.

  Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets
  via Bucketing", ICLR 2022. Outputs ceil(n/s) rows, the last bucket holding the
  n mod s leftover gradients when s does not divide n. f is kept for the rule
  that follows (at most f buckets hold a Byzantine gradient), so it must accept
  ceil(n/s) rows with f Byzantine (check() of a chain verifies that). The paper
  takes s small enough that s*f/n stays below the breakdown fraction of that
  rule. `s` defaults to 2, 1 <= s <= n.

  `seed`: None draws a fresh permutation at every call from TensorFlow's
  stateful RNG (reproducible with tf.random.set_seed, though not under XLA); an
  int gives one fixed permutation from the stateless RNG, the same at every
  call, for tests and debugging.
  """

  name = "bucketing"
  reference = "Karimireddy, He, Jaggi, ICLR 2022"
  params = {"s": 2, "seed": None}
  keeps_rows = False

  def _check(self, n: int, f: int, s: int, seed: Any) -> None:
    del f
    gars.check_positive_int(self.name, "s", s, minimum=1, maximum=n)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not -2**63 <= seed < 2**63):
      raise ValueError(f"bucketing expects seed as None or a 64-bit int, got {seed!r}")

  def output_count(self, n: int, f: int, s: int, seed: Any) -> int:
    del f, seed
    return math.ceil(n / s)

  def _transform(self, gradients: tf.Tensor, f: int, s: int, seed: Any) -> tf.Tensor:
    del f
    n, d = gradients.shape
    # argsort of uniform keys: a permutation that also compiles under XLA.
    if seed is None:
      keys = tf.random.uniform([n])
    else:
      # Philox named explicitly: "auto_select" picks another algorithm under XLA, hence another permutation.
      keys = tf.random.stateless_uniform([n], seed=tf.constant([int(seed), 0], tf.int64), alg="philox")
    shuffled = tf.gather(gradients, tf.argsort(keys))
    full = n // s
    buckets = [tf.reduce_mean(tf.reshape(shuffled[:full * s], [full, s, d]), axis=1)] if full else []
    if n % s:
      buckets.append(tf.reduce_mean(shuffled[full * s:], axis=0, keepdims=True))
    return tf.concat(buckets, axis=0) if len(buckets) > 1 else buckets[0]
