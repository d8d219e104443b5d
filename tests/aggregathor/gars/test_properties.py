"""Properties every registered rule must have, parametrised over `gars.names()` (plus each pre-aggregation
chained before `median`), so that a newly registered rule is covered without editing this file.

Robustness properties apply to rules whose class sets `robust = True`. Each call uses a fresh instance
(`gars.get`), so a stateful rule (centered-clipping's center) starts from the same state every time.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars

F = 2  # Byzantine workers in the data-driven properties
D = 5  # coordinates

RULES = gars.names()
# Each pre-aggregation in front of a robust rule; their required arguments.
CHAINS = [f"{pre}>median" for pre in gars.pre_aggregations()]
CHAIN_ARGS: dict[str, dict[str, Any]] = {"clipping>median": {"threshold": 1.}}
# Conditions stated by the issue or the papers; other rules are checked for consistency only.
SMALLEST_N: dict[str, Callable[[int], int]] = {
    "average": lambda f: max(f, 1),
    "median": lambda f: 2 * f + 1,
    "trimmed-mean": lambda f: 2 * f + 1,
    "krum": lambda f: 2 * f + 3,
    "multi-krum": lambda f: 2 * f + 3,
    "bulyan": lambda f: 4 * f + 3,
    "mda": lambda f: 2 * f + 1,
    "cge": lambda f: 2 * f + 1,
}
# What a rule returns when all inputs are the vector v, where it is not v itself.
ALL_EQUAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sign-majority": np.sign}
# Rules whose output legitimately depends on the order of the rows.
ORDER_DEPENDENT = {"bucketing>median": "bucketing draws a random permutation"}
# Rules that cannot compile under XLA (jit_compile=True), with the reason.
NO_XLA: dict[str, str] = {}


def make(name: str) -> tuple[gars.Rule, dict[str, Any]]:
  return gars.get(name), CHAIN_ARGS.get(name, {})


def make_deterministic(name: str) -> tuple[gars.Rule, dict[str, Any]]:
  """`make`, with bucketing's permutation seeded: the same with and without XLA, and in every trace."""
  rule, kwargs = make(name)
  return rule, {**kwargs, "seed": 0} if name.startswith("bucketing") else kwargs


def aggregate(name: str, gradients: Any, f: int) -> np.ndarray:
  rule, kwargs = make(name)
  return rule.aggregate(gradients, f, **kwargs).numpy()


def smallest_n(name: str, f: int) -> int:
  rule, kwargs = make(name)
  for n in range(1, 100):
    try:
      rule.check(n, f, **kwargs)
      return n
    except ValueError:
      pass
  raise AssertionError(f"{name} accepts no n < 100 for f={f}")


def is_robust(name: str) -> bool:
  return gars.get(name).robust


def robust_only(name: str) -> None:
  if not is_robust(name):
    pytest.skip(f"{name} is not a robust rule (robust = False)")


def honest_and_byzantine(name: str, byzantine: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
  """(n, D) rows at the smallest n the rule accepts for F, the F Byzantine rows spread among the honest."""
  n = smallest_n(name, F)
  rng = np.random.default_rng(n)
  honest = rng.normal(size=(n - F, D))
  rows = np.concatenate([honest, byzantine]).astype(dtype)
  return honest, rows[rng.permutation(n)]


@pytest.mark.parametrize("name", RULES + CHAINS)
def test_permutation_invariance(name):
  if name in ORDER_DEPENDENT:
    pytest.skip(ORDER_DEPENDENT[name])
  n = smallest_n(name, F) + 2
  rng = np.random.default_rng(1)
  x = rng.normal(size=(n, D))
  expected = aggregate(name, x, F)
  for _ in range(3):
    np.testing.assert_allclose(aggregate(name, x[rng.permutation(n)], F), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("f", [0, F])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_all_equal_inputs_give_that_vector(name, f):
  v = np.random.default_rng(2).uniform(-1, 1, size=D)  # norm < 3: inside every default clipping radius
  n = smallest_n(name, f) + 1
  expected = ALL_EQUAL.get(name.split(">")[-1], lambda v: v)(v)
  if name == "clipping>median":
    expected = v / max(1., np.linalg.norm(v))
  np.testing.assert_allclose(aggregate(name, np.tile(v, (n, 1)), f), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", ["same", "spread"])
@pytest.mark.parametrize("scale", [1e30, -1e30])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_far_byzantine_vectors_keep_a_robust_output_bounded(name, scale, pattern, dtype):
  robust_only(name)
  rng = np.random.default_rng(3)
  byzantine = scale * (np.ones((F, D)) if pattern == "same" else 1 + rng.random((F, D)))
  honest, x = honest_and_byzantine(name, byzantine, dtype)
  out = aggregate(name, x, F)
  assert np.all(np.isfinite(out)), out
  # Honest rows are standard normal; a broken rule lands near 1e30.
  center = honest.mean(axis=0)
  radius = np.linalg.norm(honest - center, axis=1).max()
  assert np.linalg.norm(out - center) <= 10 * (radius + 1), out


NON_FINITE = {
    "nan": np.full((F, D), np.nan),
    "+inf": np.full((F, D), np.inf),
    "-inf": np.full((F, D), -np.inf),
    "mixed": np.array([[np.nan] * D, [-np.inf] * D]),
    "one-coordinate": np.where(np.eye(F, D) > 0, np.nan, 1.),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(NON_FINITE))
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_non_finite_byzantine_rows_keep_a_robust_output_finite(name, kind, dtype):
  robust_only(name)
  honest, x = honest_and_byzantine(name, NON_FINITE[kind], dtype)
  out = aggregate(name, x, F)
  assert np.all(np.isfinite(out)), out
  center = honest.mean(axis=0)
  assert np.linalg.norm(out - center) <= 10 * (np.linalg.norm(honest - center, axis=1).max() + 1), out


@pytest.mark.parametrize("f", [1, 2, 3])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_check_boundary(name, f):
  rule, kwargs = make(name)
  n = smallest_n(name, f)
  if name in SMALLEST_N:
    assert n == SMALLEST_N[name](f)
  for larger in range(n, n + 8):  # every larger n passes too
    rule.check(larger, f, **kwargs)
  if n > 1:
    # The message names the condition; a chain names its stage's, on that stage's row count.
    expected = re.escape(f"f <= n, got n={n - 1}") if n - 1 < f else "got n=\\d+" if ">" in name else \
        re.escape(f"got n={n - 1}, f={f}")
    with pytest.raises(ValueError, match=expected):
      rule.check(n - 1, f, **kwargs)
  # The boundary n aggregates.
  out = aggregate(name, np.random.default_rng(4).normal(size=(n, D)), f)
  assert out.shape == (D,) and np.all(np.isfinite(out))


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_compiles_in_tf_function(name, jit_compile):
  if jit_compile and name in NO_XLA:
    pytest.xfail(NO_XLA[name])
  n = smallest_n(name, F) + 1
  x = tf.constant(np.random.default_rng(5).normal(size=(n, D)), tf.float32)
  rule, kwargs = make_deterministic(name)
  compiled = tf.function(lambda g: rule.aggregate(g, F, **kwargs), jit_compile=jit_compile)
  out = compiled(x).numpy()
  eager_rule, _ = make(name)
  np.testing.assert_allclose(out, eager_rule.aggregate(x, F, **kwargs).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", RULES + CHAINS)
def test_scale_equivariant_rules_commute_with_a_positive_scale(name):
  # What a rule that says scale_equivariant promises a caller that scales its output instead of its input:
  # exactly the same output and selection for a power of two, the same up to round-off for another scale.
  rule, kwargs = make(name)
  if not rule.scale_equivariant:
    pytest.skip(f"{name} does not say it is scale-equivariant")
  n = smallest_n(name, F) + 2
  x = np.random.default_rng(3).normal(size=(n, D))
  aggregated, selected = (np.asarray(v) if v is not None else None for v in rule.aggregate_and_select(x, F, **kwargs))
  for scale in (8., 1 / 16):
    scaled, scaled_selected = rule.aggregate_and_select(x * scale, F, **kwargs)
    np.testing.assert_array_equal(scaled.numpy(), aggregated * scale)
    if selected is not None:
      np.testing.assert_array_equal(scaled_selected.numpy(), selected)
  np.testing.assert_allclose(rule.aggregate(x * 3., F, **kwargs).numpy(), aggregated * 3., rtol=1e-12)


def test_the_scale_equivariant_rules():
  # The rules that commute with a scale (see Rule.scale_equivariant), and some that do not: sign-majority's
  # output is a sign, clipping's threshold and geometric-median's smoothing are absolute, bucketing draws.
  equivariant = {name for name in RULES if gars.get(name).scale_equivariant}
  assert equivariant == {"average", "average-nan", "averaged-median", "bulyan", "cge", "krum", "mda", "median",
                         "multi-krum", "phocas", "trimmed-mean"}
  assert gars.get("nnm>krum").scale_equivariant and not gars.get("clipping>krum").scale_equivariant
  assert not gars.get("bucketing>median").scale_equivariant
