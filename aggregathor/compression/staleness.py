"""AdaComp's per-coordinate staleness: how many of the updates applied since a worker fetched touched a coordinate."""

from __future__ import annotations

import tensorflow as tf


def staleness(history: tf.Tensor, applied: tf.Tensor | int, delay: tf.Tensor | int) -> tf.Tensor:
  """(d,) int32: for each coordinate, the number of the last `delay` applied updates that touched it.

  Hardy, Le Merrer, Sericola, "Distributed deep learning on edge-devices:
  feasibility via adaptive compression", IEEE NCA 2017 (their PS): a worker's
  delay is the PS's iteration count now minus its count when the worker
  fetched the weights; each coordinate i it sends is then applied as
  w_i ← w_i − lr·g_i / max(1, s_i). `history` is an (H, d) bool ring buffer of
  the coordinates each update touched, update u in slot u mod H, and `applied`
  the updates recorded so far. A delay of 0 counts nothing (the reference
  code's `history[-0:]` would count the whole history); a delay beyond H or
  beyond the updates applied counts those there are.
  """
  slots = history.shape[0]
  applied = tf.cast(applied, tf.int64)
  count = tf.minimum(tf.minimum(tf.cast(delay, tf.int64), applied), slots)
  recent = tf.math.floormod(applied - 1 - tf.range(count), slots)
  return tf.reduce_sum(tf.cast(tf.gather(history, recent), tf.int32), axis=0)


def scale(values: tf.Tensor, stale: tf.Tensor) -> tf.Tensor:
  """values / max(1, staleness), coordinate by coordinate."""
  return values / tf.cast(tf.maximum(stale, 1), values.dtype)
