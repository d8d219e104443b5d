"""Tests of the `centered-clipping` rule, whose center carries over between calls."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

nan, inf = np.nan, np.inf
# With tau=1 and the center v starting at 0, one step is v + (clip(5 - v) + clip(0 - v) + clip(0 - v)) / 3:
#   first:  (1 + 0 + 0) / 3                 = 1/3
#   second: 1/3 + (1 - 1/3 - 1/3) / 3       = 4/9   (5 - 1/3 clips to 1; -1/3 is inside the radius)
ONE_DIMENSIONAL = np.array([[5.], [0.], [0.]], np.float32)


def rule() -> gars.Rule:
  return gars.get("centered-clipping")


def test_center_carries_over_between_calls():
  r = rule()
  assert r.center is None
  np.testing.assert_allclose(r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [1 / 3], rtol=1e-6)
  np.testing.assert_allclose(r.center.numpy(), [1 / 3], rtol=1e-6)
  np.testing.assert_allclose(r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [4 / 9], rtol=1e-6)


def test_fresh_instances_do_not_share_the_center():
  first = rule()
  first.aggregate(ONE_DIMENSIONAL, f=1, tau=1.)
  np.testing.assert_allclose(rule().aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [1 / 3], rtol=1e-6)


def test_iterations_within_one_call():
  np.testing.assert_allclose(rule().aggregate(ONE_DIMENSIONAL, f=1, tau=1., iterations=2).numpy(), [4 / 9], rtol=1e-6)


def test_reset():
  r = rule()
  r.reset()  # before any call: nothing to reset
  r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.)
  r.reset()
  np.testing.assert_array_equal(r.center.numpy(), [0.])
  np.testing.assert_allclose(r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [1 / 3], rtol=1e-6)


def test_build_creates_the_center_to_restore_before_a_call():
  r = rule()
  assert r.variables() == {}
  r.build(1, tf.float32)
  assert set(r.variables()) == {"center"}
  r.variables()["center"].assign([1 / 3])  # as a checkpoint restore would
  np.testing.assert_allclose(r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [4 / 9], rtol=1e-6)
  with pytest.raises(ValueError, match="d=2"):
    r.build(2, tf.float32)


def test_chain_exposes_the_center_under_its_stage_name():
  chain = gars.get("nnm>centered-clipping")
  chain.build(1, tf.float32)
  assert list(chain.variables()) == ["centered-clipping.center"]
  assert gars.get("nnm>krum").variables() == {}


def test_clips_the_vector_norm_not_each_coordinate():
  # From 0, (3, 4) has norm 5 and clips to (0.6, 0.8); (0.3, 0.4) is inside the radius.
  x = np.array([[3., 4.], [0.3, 0.4], [0., 0.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1, tau=1.).numpy(), [0.3, 0.4], rtol=1e-6)


def test_default_radius_leaves_small_gradients_unclipped():
  # Every norm is below tau=10, so the first step from 0 is the plain mean.
  x = np.array([[1., 2.], [3., -4.], [2., 5.]], np.float32)
  np.testing.assert_allclose(rule().aggregate(x, f=1).numpy(), [2., 1.], rtol=1e-6)


@pytest.mark.parametrize("byzantine", [[nan], [inf], [-inf]])
def test_non_finite_rows_contribute_zero(byzantine):
  x = np.array([[5.], byzantine, [0.]], np.float32)
  r = rule()
  np.testing.assert_allclose(r.aggregate(x, f=1, tau=1.).numpy(), [1 / 3], rtol=1e-6)
  # As if it sat on the center: 1/3 + (1 + 0 - 1/3) / 3.
  np.testing.assert_allclose(r.aggregate(x, f=1, tau=1.).numpy(), [5 / 9], rtol=1e-6)


@pytest.mark.parametrize("dtype, huge", [(np.float32, 1e30), (np.float32, 3e38), (np.float64, 1e300)])
def test_huge_rows_are_clipped_like_any_other(dtype, huge):
  # Their squared norm overflows, yet they still clip to norm tau: (1 + 0 + 0) / 3 from 0.
  x = np.array([[huge], [0.], [0.]], dtype)
  np.testing.assert_allclose(rule().aggregate(x, f=1, tau=1.).numpy(), [1 / 3], rtol=1e-6)


def test_random_byzantine_rows_move_the_center_by_at_most_tau_each():
  rng = np.random.default_rng(5)
  honest = rng.normal(size=(5, 30)).astype(np.float32)
  byzantine = np.stack([np.full(30, nan), np.full(30, -1e30), np.full(30, inf)]).astype(np.float32)
  out = rule().aggregate(np.concatenate([honest, byzantine]), f=3, tau=100.).numpy()
  # tau=100 clips no honest row: each one adds x_i / 8; the NaN and inf rows add 0, the -1e30 one -100/sqrt(30) per coordinate.
  expected = honest.sum(axis=0) / 8 - 100 / np.sqrt(30) / 8
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_float64_and_list_input():
  rows = [tf.constant(row, tf.float64) for row in ONE_DIMENSIONAL]
  out = rule().aggregate(rows, f=1, tau=1.)
  assert out.dtype == tf.float64
  np.testing.assert_allclose(out.numpy(), [1 / 3], rtol=1e-12)


def test_another_shape_or_dtype_needs_a_fresh_instance():
  r = rule()
  r.aggregate(ONE_DIMENSIONAL, f=1)
  message = ("centered-clipping keeps its center from its first call, of shape (1,) and dtype float32; "
             "got gradients of d=2, dtype float32; use a fresh instance, gars.get('centered-clipping'), for another model")
  with pytest.raises(ValueError, match=re.escape(message)):
    r.aggregate(np.ones((3, 2), np.float32), f=1)
  with pytest.raises(ValueError, match=re.escape("got gradients of d=1, dtype float64")):
    r.aggregate(ONE_DIMENSIONAL.astype(np.float64), f=1)


def test_check_boundary():
  rule().check(n=5, f=2)
  with pytest.raises(ValueError, match=re.escape("centered-clipping needs n >= 2f+1, got n=4, f=2")):
    rule().check(n=4, f=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"tau": 0.}, "centered-clipping needs a finite tau > 0, got tau=0.0"),
    ({"tau": inf}, "centered-clipping needs a finite tau > 0, got tau=inf"),
    ({"tau": "1"}, "centered-clipping expects tau as a number, got '1'"),
    ({"iterations": 0}, "centered-clipping needs 1 <= iterations, got iterations=0"),
    ({"radius": 1.}, "centered-clipping got unknown argument(s) radius; accepted: iterations, tau"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    rule().check(n=3, f=1, **kwargs)
  r = rule()
  with pytest.raises(ValueError, match=re.escape(message)):
    r.aggregate(ONE_DIMENSIONAL, f=1, **kwargs)
  assert r.center is None  # a refused call leaves no state behind


@pytest.mark.parametrize("jit_compile", [False, True])
def test_first_call_inside_tf_function_then_eager(jit_compile):
  r = rule()
  compiled = tf.function(lambda g: r.aggregate(g, f=1, tau=1.), jit_compile=jit_compile)
  np.testing.assert_allclose(compiled(tf.constant(ONE_DIMENSIONAL)).numpy(), [1 / 3], rtol=1e-6)
  np.testing.assert_allclose(compiled(tf.constant(ONE_DIMENSIONAL)).numpy(), [4 / 9], rtol=1e-6)
  # The state is the instance's, shared with eager calls; 5 - 4/9 clips to 1, -4/9 is inside: 4/9 + (1 - 8/9) / 3.
  np.testing.assert_allclose(r.aggregate(ONE_DIMENSIONAL, f=1, tau=1.).numpy(), [4 / 9 + 1 / 27], rtol=1e-6)
  r.reset()
  np.testing.assert_allclose(compiled(tf.constant(ONE_DIMENSIONAL)).numpy(), [1 / 3], rtol=1e-6)
