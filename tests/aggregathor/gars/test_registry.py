"""Tests of the rule registry (`gars.names`, `gars.get`) and of the input validation every rule shares."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

REQUIRED_RULES = ["average", "average-nan", "averaged-median", "bulyan", "centered-clipping", "cge",
                  "geometric-median", "krum", "mda", "median", "multi-krum", "phocas", "sign-majority",
                  "trimmed-mean"]


def test_names():
  names = gars.names()
  assert names == sorted(names)
  assert set(REQUIRED_RULES) <= set(names)
  assert {"nnm", "bucketing", "clipping", "arc"} <= set(gars.pre_aggregations())
  assert not set(names) & set(gars.pre_aggregations())


def test_get_returns_a_fresh_instance():
  first, second = gars.get("krum"), gars.get("krum")
  assert first is not second and type(first) is type(second)
  assert gars.get(first) is first


@pytest.mark.parametrize("name, hint", [("krun", "krum"), ("multikrum", "multi-krum"), ("bulian", "bulyan")])
def test_unknown_name_suggests_the_closest(name, hint):
  with pytest.raises(ValueError, match=re.escape(f"unknown aggregation rule {name!r} (did you mean {hint!r}?)")):
    gars.get(name)


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_not_a_name(name):
  with pytest.raises(ValueError, match="expected an aggregation rule name"):
    gars.get(name)


X = np.ones((7, 3), np.float32)


@pytest.mark.parametrize("gradients, message", [
    (np.ones(3, np.float32), "expected gradients of shape (n, d), got shape (3,)"),
    (np.ones((7, 3, 2), np.float32), "expected gradients of shape (n, d), got shape (7, 3, 2)"),
    (np.ones((0, 3), np.float32), "expected at least one gradient of at least one coordinate, got shape (0, 3)"),
    (np.ones((7, 0), np.float32), "expected at least one gradient of at least one coordinate, got shape (7, 0)"),
    ([], "expected a non-empty list of gradients, got an empty list"),
    ([tf.ones([3], tf.float32), tf.ones([3], tf.float64)],
     "expected gradients of a single float dtype, got mixed dtypes ['float32', 'float64']"),
    ([tf.ones([3]), tf.ones([4])], "expected each of the gradients to be a vector of the same shape (d,)"),
    (np.ones((7, 3), np.int32), "expected gradients of dtype float32 or float64, got int32"),
    ("abc", "expected gradients of dtype float32 or float64, got string"),
])
@pytest.mark.parametrize("name", ["krum", "bulyan", "nnm>median"])
def test_bad_gradients(name, gradients, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    gars.get(name).aggregate(gradients, f=1)


@pytest.mark.parametrize("f, message", [
    (-1, "expected f >= 0 Byzantine workers, got f=-1"),
    (1.0, "expected f, the number of Byzantine workers, as an int, got 1.0"),
    ("1", "expected f, the number of Byzantine workers, as an int, got '1'"),
    (True, "expected f, the number of Byzantine workers, as an int, got True"),
    (8, "expected f <= n, got n=7, f=8"),
])
@pytest.mark.parametrize("name", ["krum", "mda", "bucketing>cge"])
def test_bad_f(name, f, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    gars.get(name).aggregate(X, f=f)
  with pytest.raises(ValueError, match=re.escape(message)):
    gars.get(name).check(n=7, f=f)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_n(n):
  with pytest.raises(ValueError, match=re.escape(f"krum needs n >= 1 gradients, got n={n!r}")):
    gars.get("krum").check(n=n, f=0)


def test_unknown_argument():
  with pytest.raises(ValueError, match=re.escape("bulyan got unknown argument(s) beta; accepted: none")):
    gars.get("bulyan").aggregate(X, f=1, beta=3)
