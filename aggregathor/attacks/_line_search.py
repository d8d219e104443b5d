"""Shared machinery of the `optimal-*` attacks: a bounded line search of an attack's factor against a rule.

Not an attack itself (the leading underscore keeps `import_submodules` from
registering it); `optimal_little.py` and `optimal_empire.py` subclass it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import tensorflow as tf

from aggregathor import attacks, gars, ops
from aggregathor.attacks import _common

MAX_EVALUATIONS = 64


class LineSearch(attacks.Attack):
  """An attack whose Byzantine gradients depend on one scalar factor, tuned against the rule under attack.

  The search maximises ||gar(honest + byzantine(factor), f_decl) -
  mean(honest)||, the distance between the rule's output and the honest mean,
  with the Byzantine rows appended after the honest ones. It is a zooming grid
  search, robust to the cliffs such objectives have (Krum, say, stops selecting
  the Byzantine gradients past some factor): `points` evenly spaced factors in
  [factor_min, factor_max], then `rounds - 1` times `points` factors spanning
  one former grid step on each side of the best so far. The plain attack's
  default factor is evaluated too when it lies in the range, so the result is
  never worse than it. The rule is evaluated points * rounds (+1) times, at
  most 64; a non-finite output counts as an infinite distance.

  Built from tensor ops only, so it also runs inside `tf.function` (with the
  rule traced once per evaluation). A stateful rule passed as an instance is
  evaluated, hence stepped, several times per call; pass it by name to search
  against a fresh instance instead.

  Subclasses set `factor_name` and the range defaults, and implement `_build`
  and `_default_factor`.
  """

  factor_name: ClassVar[str] = "factor"
  params: ClassVar[Mapping[str, Any]] = {
      "gar_args": None, "factor_min": 0.0, "factor_max": 10.0, "points": 9, "rounds": 3}

  # To implement

  def _build(self, honest: tf.Tensor, f_real: int, factor: tf.Tensor) -> tf.Tensor:
    """(f_real, d) Byzantine gradients for a scalar tensor `factor`."""
    raise NotImplementedError

  def _default_factor(self, n: int, f_real: int) -> float | None:
    """The plain attack's factor, evaluated alongside the grid (None if it has none for this n, f)."""
    raise NotImplementedError

  # Public API

  def __call__(self, honest: ops.Gradients, f_real: int, f_decl: int, gar: Any = None,
               **kwargs: Any) -> tf.Tensor:
    """Like every attack; `gar` (a rule name or `gars.Rule`) is required. `gar_args` go to the rule."""
    return super().__call__(honest, f_real, f_decl, self._rule(gar), **kwargs)

  def search(self, honest: ops.Gradients, f_real: int, f_decl: int, gar: Any = None,
             **kwargs: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs the search alone: returns (best factor, the distance it reaches), two scalar tensors."""
    rule = self._rule(gar)
    matrix, f_real, f_decl, args = self.validate(honest, f_real, f_decl, kwargs)
    if f_real == 0:
      raise ValueError(f"attack {self.name} has nothing to search with f_real=0 Byzantine workers")
    return self._search(matrix, f_real, f_decl, rule, **args)

  def check(self, n: int, f_real: int, f_decl: int, gar_args: Mapping[str, Any] | None,
            factor_min: float, factor_max: float, points: int, rounds: int) -> None:
    if gar_args is not None and not isinstance(gar_args, Mapping):
      raise ValueError(f"attack {self.name} expects gar_args as a dict of the rule's arguments, got {gar_args!r}")
    low = _common.check_number(self.name, "factor_min", factor_min)
    high = _common.check_number(self.name, "factor_max", factor_max)
    if not low < high:
      raise ValueError(f"attack {self.name} needs factor_min < factor_max, got [{low:g}, {high:g}]")
    points = _common.check_int(self.name, "points", points, minimum=2)
    rounds = _common.check_int(self.name, "rounds", rounds, minimum=1)
    if points * rounds > MAX_EVALUATIONS:
      raise ValueError(f"attack {self.name} evaluates the rule points * rounds times, at most {MAX_EVALUATIONS}; "
                       f"got points={points}, rounds={rounds} ({points * rounds})")

  # Implementation

  def _rule(self, gar: Any) -> gars.Rule:
    if gar is None:
      raise ValueError(f"attack {self.name} searches its {self.factor_name} against the rule under attack: pass "
                       f"gar=<a rule name such as 'median' or 'krum', or a gars.Rule>")
    return gars.get(gar)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: gars.Rule, **args: Any) -> tf.Tensor:
    factor, _ = self._search(honest, f_real, f_decl, gar, **args)
    return self._build(honest, f_real, factor)

  def _search(self, honest: tf.Tensor, f_real: int, f_decl: int, rule: gars.Rule,
              gar_args: Mapping[str, Any] | None, factor_min: float, factor_max: float, points: int,
              rounds: int) -> tuple[tf.Tensor, tf.Tensor]:
    gar_args = dict(gar_args or {})
    n = honest.shape[0] + f_real
    try:
      rule.check(n, f_decl, **gar_args)
    except ValueError as error:
      raise ValueError(f"attack {self.name} cannot evaluate rule {rule.name} with n={n}, f_decl={f_decl}: "
                       f"{error}") from None
    dtype = honest.dtype
    target = _common.honest_mean(honest)

    def distance(factor: tf.Tensor) -> tf.Tensor:
      gradients = tf.concat([honest, self._build(honest, f_real, factor)], axis=0)
      output = rule.aggregate(gradients, f_decl, **gar_args)
      return ops.finite_or_inf(tf.norm(output - target))

    def evaluate(factors: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
      # A bounded Python loop over candidates: rules need not vectorise over a batch of inputs.
      distances = tf.stack([distance(factor) for factor in tf.unstack(factors)])
      best = tf.argmax(distances, output_type=tf.int32)  # first of ties: the smallest factor of the grid
      return factors[best], distances[best]

    low = tf.constant(factor_min, dtype)
    high = tf.constant(factor_max, dtype)
    unit = tf.linspace(tf.constant(0, dtype), tf.constant(1, dtype), points)
    candidates = low + (high - low) * unit
    default = self._default_factor(n, f_real)
    if default is not None and factor_min <= default <= factor_max:
      candidates = tf.concat([candidates, tf.constant([default], dtype)], axis=0)
    best_factor, best_distance = evaluate(candidates)
    step = (factor_max - factor_min) / (points - 1)
    for _ in range(rounds - 1):
      start = tf.maximum(low, best_factor - step)
      stop = tf.minimum(high, best_factor + step)
      factor, reached = evaluate(start + (stop - start) * unit)
      better = reached > best_distance  # strictly: keep the earlier (coarser-grid) factor on ties
      best_factor = tf.where(better, factor, best_factor)
      best_distance = tf.where(better, reached, best_distance)
      step = 2 * step / (points - 1)
    return best_factor, best_distance
