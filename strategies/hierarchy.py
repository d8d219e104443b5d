"""HiPS's two levels as one rule: each party's PS aggregates its workers, the global PS aggregates the parties.

Geng, Li, Wang, Dai, Xu, "HiPS: Hierarchical Parameter Synchronization in
Large-Scale Distributed Machine Learning", ACM SIGCOMM NetAI 2018. The n
workers are cut into `parties` contiguous groups (sizes differing by at most
one, the larger first). Party p's rows go through `local` with f workers
declared Byzantine in each party; the parties' aggregates then go through
`global_rule` with `global_f` parties declared Byzantine. Both rules come from
`aggregathor.gars`, so the defence holds against a Byzantine worker inside a
party and against a Byzantine party. A `compressor` (HiPS uses MXNet's 2-bit,
`aggregathor.compression`'s "2bit") encodes each party's push to the global PS
with the party's own residual, which the rule keeps and checkpoints; the global
rule sees the decoded pushes.

With local steps (runner.py `--local-steps K`), each worker's row is its model's
change over K SGD steps divided by the rate, so applying the aggregate with SGD
at that rate is FedAvg's w ← w + mean Δ when both rules average.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from aggregathor import gars, ops


def party_bounds(n: int, parties: int) -> list[tuple[int, int]]:
  """[start, stop) of each party's rows among n workers: contiguous, sizes differing by at most one."""
  if isinstance(parties, bool) or not isinstance(parties, int) or not 1 <= parties <= n:
    raise ValueError(f"expected 1 <= parties <= n workers ({n}), got parties={parties!r}")
  base, extra = divmod(n, parties)
  bounds, start = [], 0
  for party in range(parties):
    stop = start + base + (1 if party < extra else 0)
    bounds.append((start, stop))
    start = stop
  return bounds


class HierarchicalRule(gars.Rule):
  """The two-level rule (see the module's docstring); f, the pipeline's, is each party's declared Byzantine workers."""

  name = "hierarchical"
  reference = "Geng et al., HiPS, SIGCOMM NetAI 2018"

  def __init__(self, local: str | gars.Rule, parties: int, global_rule: str | gars.Rule = "average",
               global_f: int = 0, local_args: Mapping[str, Any] | None = None,
               global_args: Mapping[str, Any] | None = None, compressor: Any = None):
    self.local = gars.get(local)
    self.global_rule = gars.get(global_rule)
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
      raise ValueError(f"expected parties >= 1, got {parties!r}")
    self.parties = parties
    self.global_f = ops.check_f(global_f, parties)
    self.local_args = dict(local_args or {})
    self.global_args = dict(global_args or {})
    self.global_rule.check(parties, self.global_f, **self.global_args)
    self.compressor = compressor
    self._party_state: tf.Variable | None = None

  def __repr__(self) -> str:
    return (f"HierarchicalRule({self.local!r}, parties={self.parties}, global_rule={self.global_rule!r}, "
            f"global_f={self.global_f})")

  def compress_pushes_with(self, compressor: Any) -> None:
    """Each party's push goes through `compressor` (an `aggregathor.compression.Compressor`), before `build`."""
    if self._party_state is not None:
      raise ValueError("compress_pushes_with must come before the rule is built")
    self.compressor = compressor

  def _check(self, n: int, f: int) -> None:
    for start, stop in party_bounds(n, self.parties):
      try:
        self.local.check(stop - start, f, **self.local_args)
      except ValueError as error:
        raise ValueError(f"a party of {stop - start} workers (of {n} in {self.parties} parties): {error}") from error

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    self.local.build(d, dtype)
    self.global_rule.build(d, dtype)
    if self.compressor is not None and self._party_state is None:
      if self.compressor.dimension != d:
        raise ValueError(f"the party compressor is for {self.compressor.dimension} coordinates, the rows have {d}")
      with tf.init_scope():
        self._party_state = {name: tf.Variable(value, trainable=False, name=f"party_compression_{name}")
                          for name, value in self.compressor.init_state(self.parties).items()}

  def variables(self) -> dict[str, tf.Variable]:
    state = {f"local_{name}": variable for name, variable in self.local.variables().items()}
    state.update({f"global_{name}": variable for name, variable in self.global_rule.variables().items()})
    state.update({f"party_compression_{name}": variable for name, variable in (self._party_state or {}).items()})
    return state

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int) -> tuple[tf.Tensor, None]:
    n, d = gradients.shape
    pushes = tf.stack([self.local.aggregate(gradients[start:stop], f, **self.local_args)
                       for start, stop in party_bounds(n, self.parties)])
    if self.compressor is not None:
      self.build(d, gradients.dtype)
      payload, state = self.compressor.encode(tf.cast(pushes, tf.float32),
                                              {name: variable.value() for name, variable in self._party_state.items()})
      updates = [self._party_state[name].assign(value) for name, value in state.items()]
      with tf.control_dependencies(updates):
        pushes = tf.cast(self.compressor.decode(payload), gradients.dtype)
    return self.global_rule.aggregate(pushes, self.global_f, **self.global_args), None
