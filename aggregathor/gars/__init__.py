"""Gradient aggregation rules (GARs), registered by name.

    from aggregathor import gars
    gars.names()                      # the rules
    gars.pre_aggregations()           # nnm, bucketing, clipping, arc
    rule = gars.get("krum")
    rule.check(n=11, f=2)
    aggregated = rule.aggregate(gradients, f=2)        # (n, d) -> (d,)
    robust = gars.get("bucketing>nnm>krum")            # pre-aggregations chain with '>'
    robust = gars.chain("nnm", "krum")                 # the same, from Python

A new rule is one module in this package that subclasses `Rule` and decorates it
with `@register`; nothing else needs editing.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from aggregathor import ops
from aggregathor.gars._base import PreAggregation, Rule, check_positive_float, check_positive_int
from aggregathor.registry import Registry, import_submodules

__all__ = ["Rule", "PreAggregation", "Chain", "register", "get", "chain", "names", "pre_aggregations",
           "check_positive_int", "check_positive_float"]

_REGISTRY: Registry[Rule] = Registry("aggregation rule")
register = _REGISTRY.register
CHAIN_SEPARATOR = ">"


def _is_rule(cls: type[Rule]) -> bool:
  return not cls.is_pre_aggregation


def _is_pre(cls: type[Rule]) -> bool:
  return cls.is_pre_aggregation


def names() -> list[str]:
  """The names of the registered aggregation rules."""
  return _REGISTRY.names(_is_rule)


def pre_aggregations() -> list[str]:
  """The names of the registered pre-aggregations, which chain before a rule."""
  return _REGISTRY.names(_is_pre)


class Chain(Rule):
  """Pre-aggregations followed by a rule, e.g. `bucketing>nnm>krum`.

  Arguments go to the stage that declares them; `stage.argument` (e.g.
  `nnm.k` or `krum.m`) picks a stage explicitly when two declare the same name.
  Each pre-aggregation keeps f: the rule after it tolerates f of its n' rows.
  """

  def __init__(self, stages: Sequence[Rule]):
    *pres, last = stages
    if not pres:
      raise ValueError("a chain needs at least one pre-aggregation before its rule")
    for stage in pres:
      if not stage.is_pre_aggregation:
        raise ValueError(f"only pre-aggregations ({', '.join(pre_aggregations())}) can come before "
                         f"{CHAIN_SEPARATOR!r} in a chain, got the rule {stage.name!r}")
    stage_names = [stage.name for stage in stages]
    repeated = sorted({name for name in stage_names if stage_names.count(name) > 1})
    if repeated:
      raise ValueError(f"a chain names each stage once, so that its arguments are unambiguous; "
                       f"{', '.join(repeated)} appears more than once in {CHAIN_SEPARATOR.join(stage_names)}")
    self.stages = tuple(stages)
    self.name = CHAIN_SEPARATOR.join(stage.name for stage in stages)
    self.reference = "; ".join(stage.reference for stage in stages)
    self.selects = last.selects and all(stage.keeps_rows for stage in pres)
    self.robust = last.robust
    self.scale_equivariant = all(stage.scale_equivariant for stage in stages)
    self.params = {f"{stage.name}.{key}": value for stage in stages for key, value in stage.params.items()}

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    return self.stages[-1].upper_bound(n, f, d)

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    for stage in self.stages:  # pre-aggregations keep the d coordinates
      stage.build(d, dtype)

  def variables(self) -> dict[str, tf.Variable]:
    return {f"{stage.name}.{key}": variable for stage in self.stages for key, variable in stage.variables().items()}

  def resolve_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    per_stage: dict[str, dict[str, Any]] = {stage.name: {} for stage in self.stages}
    for key, value in kwargs.items():
      stage_name, dot, argument = key.rpartition(".")
      if dot:
        if stage_name not in per_stage:
          raise ValueError(f"{self.name} has no stage {stage_name!r} for argument {key!r}; stages: "
                           f"{', '.join(per_stage)}")
        owners = [stage_name]
      else:
        owners = [stage.name for stage in self.stages if key in stage.params]
        if len(owners) > 1:
          raise ValueError(f"{self.name}: argument {key!r} is ambiguous between {', '.join(owners)}; "
                           f"write it as {owners[0]}.{key}")
        if not owners:
          raise ValueError(f"{self.name} got unknown argument {key!r}; accepted: {', '.join(sorted(self.params)) or 'none'}")
        argument = key
      per_stage[owners[0]][argument] = value
    return {stage.name: stage.resolve_args(per_stage[stage.name]) for stage in self.stages}

  def _check(self, n: int, f: int, **args: Any) -> None:
    for stage in self.stages:
      stage._check(n, f, **args[stage.name])
      if stage.is_pre_aggregation:
        n = stage.output_count(n, f, **args[stage.name])

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int,
                            **args: Any) -> tuple[tf.Tensor, tf.Tensor | None]:
    *pres, last = self.stages
    for stage in pres:
      gradients = stage._transform(gradients, f, **args[stage.name])
    aggregated, selected = last._aggregate_and_select(gradients, f, **args[last.name])
    return aggregated, selected if self.selects else None


def get(name: str | Rule) -> Rule:
  """A fresh instance of the rule `name`, which may chain pre-aggregations: `nnm>krum`."""
  if isinstance(name, Rule):
    return name
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"expected an aggregation rule name, got {name!r}")
  return chain(*(part.strip() for part in name.split(CHAIN_SEPARATOR)))


def chain(*stages: str | Rule) -> Rule:
  """Composes pre-aggregations and a final rule, given by name or instance."""
  if not stages:
    raise ValueError("chain() needs at least a rule")
  # Looked up unfiltered, so that a stage in the wrong place gets a message saying so, not "unknown".
  resolved = [stage if isinstance(stage, Rule) else _REGISTRY.lookup(stage)() for stage in stages]
  if resolved[-1].is_pre_aggregation:
    raise ValueError(f"{resolved[-1].name!r} is a pre-aggregation: it goes before {CHAIN_SEPARATOR!r} and a rule "
                     f"ends the chain (e.g. {resolved[-1].name}{CHAIN_SEPARATOR}krum); rules: {', '.join(names())}")
  return resolved[0] if len(resolved) == 1 else Chain(resolved)


import_submodules(__name__, __path__)
