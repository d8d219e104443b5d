"""Tests of the `krum` rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars
from aggregathor.gars.krum import krum_scores


def rule() -> gars.Rule:
  return gars.get("krum")


# n = 5, f = 1: each score sums the n-f-2 = 2 smallest squared distances to the others.
#   0:   to 1, 2.5, 3, 10 -> 1, 6.25, 9, 100     -> 1 + 6.25    = 7.25
#   1:   to 0, 2.5, 3, 10 -> 1, 2.25, 4, 81      -> 1 + 2.25    = 3.25
#   2.5: to 0, 1, 3, 10   -> 6.25, 2.25, .25, 56.25 -> .25 + 2.25 = 2.5
#   3:   to 0, 1, 2.5, 10 -> 9, 4, .25, 49       -> .25 + 4     = 4.25
#   10:  to 0, 1, 2.5, 3  -> 100, 81, 56.25, 49  -> 49 + 56.25  = 105.25
LINE = np.array([[0.], [1.], [2.5], [3.], [10.]])
LINE_SCORES = [7.25, 3.25, 2.5, 4.25, 105.25]


def test_scores_hand_computed():
  distances = tf.constant((LINE - LINE.T) ** 2)
  np.testing.assert_allclose(krum_scores(distances, f=1).numpy(), LINE_SCORES)


def test_one_dimension_hand_computed():
  out, mask = rule().aggregate_and_select(LINE, f=1)
  np.testing.assert_array_equal(out.numpy(), [2.5])
  np.testing.assert_array_equal(mask.numpy(), [0, 0, 1, 0, 0])


def test_two_dimensions_hand_computed():
  # Squared distances (A..E = rows): AB 1, AC 4, AD 2, AE 50, BC 5, BD 1, BE 41, CD 2, CE 34, DE 32.
  # Two smallest per row: A 1+2=3, B 1+1=2, C 2+4=6, D 1+2=3, E 32+34=66 -> B.
  x = np.array([[0., 0.], [1., 0.], [0., 2.], [1., 1.], [5., 5.]], np.float32)
  out, mask = rule().aggregate_and_select(x, f=1)
  np.testing.assert_array_equal(out.numpy(), [1., 0.])
  np.testing.assert_array_equal(mask.numpy(), [0, 1, 0, 0, 0])


def test_non_finite_row_is_never_selected():
  # The 10 of LINE becomes NaN, then -inf: it is at +inf from all; the other scores are unchanged.
  for bad in (np.nan, -np.inf):
    x = LINE.copy()
    x[4, 0] = bad
    out, mask = rule().aggregate_and_select(x, f=1)
    np.testing.assert_array_equal(out.numpy(), [2.5])
    np.testing.assert_array_equal(mask.numpy(), [0, 0, 1, 0, 0])


def test_check_boundary():
  rule().check(n=5, f=1)
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=4, f=1")):
    rule().check(n=4, f=1)
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=6, f=2")):
    rule().aggregate(np.ones((6, 2)), f=2)


def test_upper_bound():
  # n=7, f=1: 1/sqrt(2 (6 + (7 + 4 - 2) / 3)) = 1/sqrt(18).
  assert rule().upper_bound(n=7, f=1, d=3) == pytest.approx(1 / math.sqrt(18))


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("krum got unknown argument(s) m; accepted: none")):
    rule().aggregate(LINE, f=1, m=2)


def test_list_input_keeps_dtype():
  out = rule().aggregate([tf.constant(row, tf.float32) for row in LINE], f=1)
  assert out.dtype == tf.float32
  np.testing.assert_array_equal(out.numpy(), [2.5])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiles_in_tf_function(jit_compile):
  compiled = tf.function(lambda g: rule().aggregate(g, f=1), jit_compile=jit_compile)
  np.testing.assert_array_equal(compiled(tf.constant(LINE, tf.float32)).numpy(), [2.5])
