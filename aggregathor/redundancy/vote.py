"""The per-file majority vote of DETOX and ByzShield: each file's r copies reduced to the value most of them hold.

Rajput et al. (DETOX, NeurIPS 2019) and Konstantinidis & Ramamoorthy
(ByzShield, MLSys 2021) take, for each file, the gradient that a majority of
its r copies agree on exactly (their code: Boyer–Moore on array equality).
Honest copies of a file are computed on the same data with the same weights,
so they are equal; Byzantine copies win only where they hold a strict
majority (r // 2 + 1) and agree among themselves.

Where no value has a strict majority, the copy that the most copies equal wins,
the first such one (lowest position) among ties, and `majority` is False for
that file. A copy holding NaN equals no copy, itself included, as NaN does.
"""

from __future__ import annotations

import tensorflow as tf


def majority_vote(copies: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(voted (F, d), majority (F,) bool) of the files' copies, an (F, r, d) tensor."""
  copies = tf.convert_to_tensor(copies)
  if copies.shape.rank != 3:
    raise ValueError(f"expected the copies as an (F, r, d) tensor, got shape {copies.shape}")
  replication = copies.shape[1]
  if replication is None or replication < 1:
    raise ValueError(f"expected at least one copy per file, got shape {copies.shape}")
  # equal[f, i, j]: copies i and j of file f are the same vector (r² comparisons of whole rows; r is small).
  equal = tf.stack([tf.stack([tf.reduce_all(tf.equal(copies[:, i], copies[:, j]), axis=-1)
                              for j in range(replication)], axis=-1) for i in range(replication)], axis=-2)
  votes = tf.reduce_sum(tf.cast(equal, tf.int32), axis=-1)  # votes[f, i]: the copies equal to copy i
  winner = tf.argmax(votes, axis=-1, output_type=tf.int32)  # the first of the most-agreed copies
  voted = tf.gather(copies, winner, axis=1, batch_dims=1)
  majority = tf.gather(votes, winner, axis=1, batch_dims=1) >= replication // 2 + 1
  return voted, majority
