"""aggregathor.compression.staleness: AdaComp's per-coordinate staleness on a hand-made schedule."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor.compression import staleness

# Five updates applied, in a ring of 4 slots: update u in slot u mod 4, so update 0 was overwritten by update 4.
TOUCHED = {1: [1, 1, 0], 2: [0, 1, 0], 3: [0, 1, 1], 4: [1, 0, 0]}
HISTORY = tf.constant(np.array([TOUCHED[4], TOUCHED[1], TOUCHED[2], TOUCHED[3]], bool))


def test_counts_the_last_delay_updates_per_coordinate():
  assert staleness.staleness(HISTORY, 5, 0).numpy().tolist() == [0, 0, 0]  # not the whole history
  assert staleness.staleness(HISTORY, 5, 1).numpy().tolist() == [1, 0, 0]  # update 4
  assert staleness.staleness(HISTORY, 5, 2).numpy().tolist() == [1, 1, 1]  # updates 3 and 4
  assert staleness.staleness(HISTORY, 5, 4).numpy().tolist() == [2, 3, 1]  # updates 1 to 4
  assert staleness.staleness(HISTORY, 5, 9).numpy().tolist() == [2, 3, 1]  # no more than the ring holds


def test_early_on_only_the_updates_applied_count():
  history = tf.constant(np.array([[1, 0], [0, 0], [0, 0]], bool))
  assert staleness.staleness(history, 1, 3).numpy().tolist() == [1, 0]


def test_each_coordinate_is_divided_by_its_staleness_at_least_one():
  values = tf.constant([4.0, 4.0, 4.0])
  np.testing.assert_allclose(staleness.scale(values, tf.constant([0, 1, 4])).numpy(), [4.0, 4.0, 1.0])
