"""Tests of the `sign-majority` rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf


def rule() -> gars.Rule:
  return gars.get("sign-majority")


def test_hand_computed_votes():
  x = np.array([[1., -2., 0., nan, -inf],
                [3., -1., 5., nan, 2.],
                [-4., 2., -1., inf, -0.5]], np.float32)
  # Votes per column: (1,1,-1), (-1,-1,1), (0,1,-1), (0,0,1), (-1,1,-1).
  np.testing.assert_array_equal(rule().aggregate(x, f=1).numpy(), [1., -1., 0., 1., -1.])


def test_tie_gives_zero():
  np.testing.assert_array_equal(rule().aggregate(np.array([[2.], [-3.]], np.float32), f=0).numpy(), [0.])


def test_output_is_a_sign_not_a_magnitude():
  x = np.array([[1e-3, -7.], [5e4, -1e-9], [2., 3.]], np.float32)
  np.testing.assert_array_equal(rule().aggregate(x, f=1).numpy(), [1., -1.])


def test_non_finite_byzantine_rows_cannot_outvote_the_honest_majority():
  honest = np.array([[1., -1., 2.], [2., -3., 1.], [0.5, -2., -1.]], np.float32)
  byzantine = np.array([[-inf, inf, nan], [nan, inf, -inf]], np.float32)
  out = rule().aggregate(np.concatenate([byzantine, honest]), f=2).numpy()
  # Column 2: honest votes (1,1,-1) plus (0,-1) -> a tie.
  np.testing.assert_array_equal(out, [1., -1., 0.])


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("sign-majority needs n >= 2f+1, got n=4, f=2")):
    rule().check(n=4, f=2)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("sign-majority got unknown argument(s) tau; accepted: none")):
    rule().check(n=3, f=1, tau=1.)


def test_float64_and_list_input():
  rows = [tf.constant([v, -v], tf.float64) for v in (1., 2., -9.)]
  out = rule().aggregate(rows, f=1)
  assert out.dtype == tf.float64
  np.testing.assert_array_equal(out.numpy(), [1., -1.])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  x = tf.constant([[1., nan], [3., -6.], [-2., -inf]], tf.float32)
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(x).numpy(), [1., -1.])
