"""The per-file majority vote."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor.redundancy.vote import majority_vote

HONEST = np.arange(1.0, 6.0, dtype=np.float32)
ATTACK = -10 * HONEST


def vote(*files):
  voted, majority = majority_vote(np.stack([np.stack(copies) for copies in files]))
  return voted.numpy(), majority.numpy()


def test_a_byzantine_minority_is_outvoted_and_a_coordinated_majority_wins():
  voted, majority = vote([HONEST, ATTACK, HONEST], [ATTACK, HONEST, ATTACK], [HONEST, HONEST, HONEST])
  np.testing.assert_array_equal(voted, [HONEST, ATTACK, HONEST])
  assert majority.tolist() == [True, True, True]


def test_no_strict_majority_takes_the_first_most_agreed_copy():
  # r=3: three different rows (Byzantines that do not agree); r=4: a 2-2 tie.
  voted, majority = vote([ATTACK, 2 * ATTACK, HONEST])
  np.testing.assert_array_equal(voted, [ATTACK])
  assert majority.tolist() == [False]
  voted, majority = vote([ATTACK, HONEST, HONEST, ATTACK])
  np.testing.assert_array_equal(voted, [ATTACK])
  assert majority.tolist() == [False]


def test_nan_copies_agree_with_nothing():
  nan = np.full_like(HONEST, np.nan)
  voted, majority = vote([nan, nan, HONEST])
  np.testing.assert_array_equal(voted, [HONEST])
  assert majority.tolist() == [False]


def test_one_bit_of_difference_is_a_different_value():
  nudged = HONEST.copy()
  nudged[2] = np.nextafter(nudged[2], np.float32(np.inf))
  voted, majority = vote([nudged, HONEST, HONEST])
  np.testing.assert_array_equal(voted, [HONEST])
  assert majority.tolist() == [True]


def test_inside_a_compiled_function_and_bad_shapes():
  copies = tf.constant(np.stack([np.stack([HONEST, ATTACK, HONEST])] * 4))
  voted, majority = tf.function(majority_vote, jit_compile=True)(copies)
  np.testing.assert_array_equal(voted.numpy(), np.stack([HONEST] * 4))
  assert majority.numpy().all()
  with pytest.raises(ValueError, match=r"an \(F, r, d\) tensor"):
    majority_vote(np.zeros((3, 4), np.float32))
