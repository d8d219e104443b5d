"""DETOX's and ByzShield's aggregation: each file's copies, the per-file vote, then a robust rule across the files.

Rajput et al., "DETOX", NeurIPS 2019; Konstantinidis & Ramamoorthy,
"ByzShield", MLSys 2021. The honest copies of a file are its gradient; every
Byzantine worker sends one vector for all its copies (the adversary
coordinates, so that its copies agree and win the votes it holds a majority
of). After the vote, the F voted gradients may be averaged in `buckets`
groups (ByzShield's `--bucket-size`, which despite its name is the number of
groups, in a seeded random order), and the rule aggregates them with f the
number of distorted files it may face: the placement's c_max(q) (DETOX's
⌊q/r'⌋), at most the number of buckets.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from aggregathor import gars
from aggregathor.redundancy._base import Placement
from aggregathor.redundancy.vote import majority_vote


def byzantine_copies(placement: Placement, byzantine: np.ndarray) -> np.ndarray:
  """The (F, r) mask of the copies that Byzantine workers compute, for a boolean mask over the K workers."""
  return np.array([[bool(byzantine[w]) for w in workers] for workers in placement.files])


def effective_f(placement: Placement, q: int, buckets: int | None = None) -> int:
  """The distorted files (buckets) a rule across the files must tolerate against q Byzantine workers."""
  distorted = placement.worst_case(q).distorted
  return min(distorted, buckets) if buckets else distorted


def aggregate(file_gradients: tf.Tensor, copy_mask: tf.Tensor, attack_vector: tf.Tensor, rule: gars.Rule, f: int,
              rule_args: Mapping[str, Any] | None = None, buckets: int | None = None,
              order: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(aggregated (d,), voted (F, d), distorted (F,) bool) of one step.

  file_gradients: (F, d), each file's honest gradient. copy_mask: (F, r), the
  Byzantine copies. attack_vector: (d,), what every Byzantine copy holds.
  order: a permutation of the F files for the buckets.
  """
  copies = tf.where(copy_mask[:, :, None], attack_vector[None, None, :], file_gradients[:, None, :])
  distorted = tf.reduce_sum(tf.cast(copy_mask, tf.int32), axis=1) >= copy_mask.shape[1] // 2 + 1
  aggregated, voted = vote_and_aggregate(copies, rule, f, rule_args, buckets, order)
  return aggregated, voted, distorted


def vote_and_aggregate(copies: tf.Tensor, rule: gars.Rule, f: int, rule_args: Mapping[str, Any] | None = None,
                       buckets: int | None = None, order: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """(aggregated (d,), voted (F, d)): the vote on each file's (r, d) copies, the buckets, then the rule."""
  voted, _ = majority_vote(copies)
  rows = voted
  if buckets:
    files = voted.shape[0]
    order = tf.range(files) if order is None else order
    # Bucket b averages the files order[b], order[b + B], ...: each file in one bucket, sizes differing by 1.
    rows = tf.math.unsorted_segment_mean(tf.gather(voted, order), tf.range(files) % buckets, buckets)
  return rule.aggregate(rows, f, **dict(rule_args or {})), voted
