"""Helpers shared by the attacks: argument checks, honest statistics and seeded randomness.

Not an attack (the leading underscore keeps `import_submodules` from loading it
as one); the attack modules import it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import tensorflow as tf


# Argument checks: each names the attack and the argument, and says what was expected.

def check_number(attack: str, name: str, value: Any, minimum: float | None = None,
                 strict: bool = False) -> float:
  """Validates a finite real argument, optionally `>= minimum` (or `> minimum` when `strict`)."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"attack {attack} expects {name} as a number, got {value!r}")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"attack {attack} needs a finite {name}, got {name}={value}")
  if minimum is not None and (value <= minimum if strict else value < minimum):
    raise ValueError(f"attack {attack} needs {name} {'>' if strict else '>='} {minimum:g}, got {name}={value:g}")
  return value


def check_int(attack: str, name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
  """Validates an integer argument in [minimum, maximum]."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"attack {attack} expects {name} as an int, got {value!r}")
  if value < minimum or (maximum is not None and value > maximum):
    bound = f"{minimum} <= {name}" + (f" <= {maximum}" if maximum is not None else "")
    raise ValueError(f"attack {attack} needs {bound}, got {name}={value}")
  return int(value)


def check_seed(attack: str, seed: Any) -> int | None:
  """A seed is None (stateful, global TensorFlow randomness) or an int >= 0."""
  if seed is None:
    return None
  return check_int(attack, "seed", seed, minimum=0, maximum=2**63 - 1)


def check_choice(attack: str, name: str, value: Any, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f"attack {attack} expects {name} to be one of {', '.join(map(repr, choices))}, got {value!r}")
  return value


# Honest statistics, the same estimators in every attack.

def honest_mean(honest: tf.Tensor) -> tf.Tensor:
  """(d,) coordinate-wise mean of the honest gradients."""
  return tf.reduce_mean(honest, axis=0)


def honest_std(honest: tf.Tensor) -> tf.Tensor:
  """(d,) coordinate-wise unbiased sample standard deviation (divides by n_honest - 1).

  The unbiased estimator is the usual "sample standard deviation" of ALIE's
  Algorithm 3 and of reference implementations; with a single honest gradient it
  is undefined, and this returns 0 (the attacker then has no spread to exploit).
  """
  n_honest = honest.shape[0]
  if n_honest < 2:
    return tf.zeros([honest.shape[1]], honest.dtype)
  deviations = honest - honest_mean(honest)[None]
  return tf.sqrt(tf.reduce_sum(tf.square(deviations), axis=0) / (n_honest - 1))


def repeat(vector: tf.Tensor, f: int) -> tf.Tensor:
  """(f, d): `vector` sent by every one of the f Byzantine workers."""
  return tf.tile(vector[None], [f, 1])


# Randomness: stateless (reproducible, XLA-friendly) with a seed, else TensorFlow's global stream.

def normal(shape: Sequence[int], dtype: tf.DType, seed: int | None, stream: int = 0) -> tf.Tensor:
  """Standard normal samples; `stream` separates the draws of one attack that share a seed."""
  if seed is None:
    return tf.random.normal(shape, dtype=dtype)
  return tf.random.stateless_normal(shape, seed=_seed_pair(seed, stream), dtype=dtype)


def uniform(shape: Sequence[int], dtype: tf.DType, seed: int | None, stream: int = 0,
            maxval: Any = None) -> tf.Tensor:
  """Uniform samples in [0, 1), or integers in [0, maxval) for an int dtype."""
  if seed is None:
    return tf.random.uniform(shape, maxval=maxval, dtype=dtype)
  return tf.random.stateless_uniform(shape, seed=_seed_pair(seed, stream), maxval=maxval, dtype=dtype)


def _seed_pair(seed: int, stream: int) -> tf.Tensor:
  return tf.constant([seed, stream], tf.int64)
