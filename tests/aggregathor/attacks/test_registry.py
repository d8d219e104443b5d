"""Tests of the attack registry and of what every attack shares (shapes, dtypes, f_real = 0, bad input)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import attacks

REQUIRED = ["nan", "inf", "random", "reverse", "sign-flip", "constant", "little", "empire", "mimic",
            "partial-drop", "optimal-little", "optimal-empire"]


def call(name: str, honest, f_real: int, f_decl: int = 2) -> tf.Tensor:
  extra = {"gar": "median"} if name.startswith("optimal-") else {}
  return attacks.get(name)(honest, f_real, f_decl, **extra)


def test_names_lists_every_required_attack_sorted():
  names = attacks.names()
  assert set(REQUIRED) <= set(names)
  assert names == sorted(names)


def test_get_returns_a_fresh_instance_or_the_given_one():
  little = attacks.get("little")
  assert isinstance(little, attacks.Attack) and little.name == "little"
  assert attacks.get("little") is not little
  assert attacks.get(little) is little


def test_unknown_name_suggests_the_closest():
  with pytest.raises(ValueError, match=re.escape("unknown attack 'litle' (did you mean 'little'?)")):
    attacks.get("litle")


def test_unknown_name_without_close_match_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown attack 'zzz'; known: .*sign-flip"):
    attacks.get("zzz")


def test_name_must_be_a_string():
  with pytest.raises(ValueError, match="as a string"):
    attacks.get(3)


def test_unknown_kwargs_name_the_accepted_ones():
  honest = np.ones((3, 2))
  with pytest.raises(ValueError, match=re.escape("attack little got unknown argument(s) z; accepted: factor")):
    attacks.get("little")(honest, 1, 1, z=2.0)
  with pytest.raises(ValueError, match=re.escape("attack sign-flip got unknown argument(s) factor; accepted: none")):
    attacks.get("sign-flip")(honest, 1, 1, factor=2.0)


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype(name, dtype):
  honest = np.random.default_rng(0).normal(size=(9, 6)).astype(dtype)
  out = call(name, honest, f_real=2)
  assert out.shape == (2, 6)
  assert out.dtype == tf.as_dtype(dtype)


@pytest.mark.parametrize("name", REQUIRED)
def test_no_byzantine_worker_gives_an_empty_matrix(name):
  honest = np.random.default_rng(1).normal(size=(5, 4))
  out = call(name, honest, f_real=0, f_decl=1)
  assert out.shape == (0, 4)
  assert out.dtype == tf.float64


@pytest.mark.parametrize("name", REQUIRED)
def test_accepts_a_list_of_vectors(name):
  rows = [tf.constant([1., 2., 3.]), tf.constant([2., 0., 1.]), tf.constant([0., 1., 5.]),
          tf.constant([4., 4., 4.]), tf.constant([1., 1., 1.])]
  assert call(name, rows, f_real=1, f_decl=1).shape == (1, 3)


@pytest.mark.parametrize("name", REQUIRED)
def test_bad_worker_counts_and_inputs(name):
  honest = np.ones((5, 3))
  with pytest.raises(ValueError, match="expected f >= 0"):
    call(name, honest, f_real=-1)
  with pytest.raises(ValueError, match="expected f, the number of Byzantine workers, as an int"):
    call(name, honest, f_real=1.0)
  with pytest.raises(ValueError, match="dtype float32 or float64"):
    call(name, np.ones((5, 3), np.int32), f_real=1)
  with pytest.raises(ValueError, match=re.escape("shape (n, d)")):
    call(name, np.ones(3), f_real=1)


@pytest.mark.parametrize("name", [n for n in REQUIRED if n not in ("random", "partial-drop")])
def test_compiles_with_xla(name):
  honest = tf.constant(np.random.default_rng(2).normal(size=(7, 5)), tf.float32)
  eager = call(name, honest, f_real=2).numpy()
  compiled = tf.function(lambda x: call(name, x, f_real=2), jit_compile=True)(honest).numpy()
  np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)
