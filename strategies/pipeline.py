"""What the trusted parameter server does with the n gradients of one step.

Honest gradient clipping, momentum at the workers, at the server per worker, or
at the update (El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for
Byzantine-resilient Stochastic Gradient Descent", ICLR 2021), simulated
Byzantine workers, gradient compression (`compress_with`: what the workers send
and the server decodes, see `aggregathor.compression`), the robust rule, and the
per-step study metrics. It works on
the (n, d) matrix alone, so the same code serves the local strategy and a
parameter server on a cluster.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import tensorflow as tf

from aggregathor import attacks, gars
from strategies.study import StudyRecorder

MOMENTUM_PLACES = ("update", "worker", "server")
BYTES_PER_WORKER = "compression/bytes-per-worker"  # the study's column with a compressor


class GradientPipeline:
  """Combines one step's (n, d) worker gradients into the gradient to apply.

  The last `nb_real_byz_workers` rows stand for the Byzantine workers. With an
  `attack`, their rows are replaced by what the attack builds from the honest
  vectors (an omniscient adversary); without one, they send what they computed
  (e.g. on label-flipped data) and follow the protocol otherwise.
  """

  def __init__(self, aggregator: str | gars.Rule, nb_workers: int, nb_decl_byz_workers: int = 0,
               nb_real_byz_workers: int = 0, attack: str | attacks.Attack | None = None,
               aggregator_args: Mapping[str, Any] | None = None, attack_args: Mapping[str, Any] | None = None,
               momentum: float = 0.0, momentum_at: str = "update", dampening: float = 0.0,
               clip: float | None = None, study_period: int = 0, hold_undecided: bool = False):
    """`hold_undecided`: a coordinate the rule leaves non-finite (e.g. too many of its rows lost their chunk on a
    lossy UDP link, as NaN, which the rules sort past every finite value) moves by 0 this step, instead of
    making the weights NaN."""
    for name, value, minimum in (("nb_workers", nb_workers, 1), ("nb_decl_byz_workers", nb_decl_byz_workers, 0),
                                 ("nb_real_byz_workers", nb_real_byz_workers, 0), ("study_period", study_period, 0)):
      if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"expected {name} >= {minimum} as an int, got {value!r}")
    if nb_real_byz_workers >= nb_workers:
      raise ValueError(f"at least one worker must be honest: got nb_real_byz_workers={nb_real_byz_workers} "
                       f">= nb_workers={nb_workers}")
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"expected 0 <= momentum < 1, got momentum={momentum}")
    if not 0.0 <= dampening < 1.0:
      raise ValueError(f"expected 0 <= dampening < 1, got dampening={dampening}")
    if momentum_at not in MOMENTUM_PLACES:
      raise ValueError(f"expected momentum_at in {', '.join(MOMENTUM_PLACES)}, got {momentum_at!r}")
    if clip is not None and not clip > 0:
      raise ValueError(f"expected a gradient clipping norm > 0 (or None), got clip={clip}")
    self.nb_workers = nb_workers
    self.nb_decl_byz_workers = nb_decl_byz_workers
    self.nb_real_byz_workers = nb_real_byz_workers
    self.rule = gars.get(aggregator)
    # As given: the rule resolves them on each call (a chain's resolved form is per stage).
    self.aggregator_args = dict(aggregator_args or {})
    self.rule.check(nb_workers, nb_decl_byz_workers, **self.aggregator_args)
    self.attack = None if attack is None else attacks.get(attack)
    self.attack_args = {} if self.attack is None else self.attack.resolve_args(dict(attack_args or {}))
    if self.attack is None and attack_args:
      raise ValueError(f"attack arguments {sorted(attack_args)} given without an attack")
    if "gar_args" in self.attack_args and self.attack_args["gar_args"] is None:
      # An omniscient attack that searches against the rule knows the rule's arguments too.
      self.attack_args["gar_args"] = dict(self.aggregator_args)
    if self.attack is not None:
      self.attack.check(nb_workers, nb_real_byz_workers, nb_decl_byz_workers, **self.attack_args)
    self.momentum = float(momentum)
    self.momentum_at = momentum_at
    self.dampening = float(dampening)
    self.clip = None if clip is None else float(clip)
    if hold_undecided and momentum and momentum_at == "server":
      raise ValueError("momentum at the server keeps each worker's rows, lost coordinates (NaN) included: with "
                       "lossy rows, put the momentum at the update or at the workers")
    self.hold_undecided = hold_undecided
    self.study = StudyRecorder(nb_workers, nb_real_byz_workers, study_period, selects=self.rule.selects)
    self._worker_momentum: tf.Variable | None = None
    self._update_momentum: tf.Variable | None = None
    self.compressor = None
    self.compressed_upstream = False
    self._compression_state: dict[str, tf.Variable] = {}

  def compress_with(self, compressor, upstream: bool = False) -> None:
    """Every worker sends `compressor`'s payload (an `aggregathor.compression.Compressor`), before `build`.

    The honest rows are encoded with each worker's state (its residual) and
    decoded; the attack sees those decoded rows, as the wire carries them, and
    its vectors go through the compressor too (a Byzantine worker must fit the
    payload's format). The rule sees the decoded rows, unsent coordinates 0.
    `upstream`: on a cluster, the worker processes compressed and the
    transport decoded already; the pipeline only counts the bytes sent.
    """
    if self._update_momentum is not None:
      raise ValueError("compress_with must come before the pipeline is built")
    self.compressor = compressor
    self.compressed_upstream = upstream
    self.study = StudyRecorder(self.nb_workers, self.nb_real_byz_workers, self.study.period, self.study.selects,
                               counters=(BYTES_PER_WORKER,))

  @property
  def nb_honest(self) -> int:
    return self.nb_workers - self.nb_real_byz_workers

  def __call__(self, gradients: tf.Tensor, present: tuple[bool, ...] | None = None,
               scale: float | None = None) -> tf.Tensor:
    """The gradient to apply, from the (n, d) gradients the workers computed.

    `present`, on a cluster's parameter server, says which of the n rows
    arrived: the rule then sees those alone, an absent worker's server-side
    momentum is kept as it was, and the step's study metrics are skipped
    (its selection counts the absent worker as not kept).
    `scale`: the workers' rows are `scale` times `gradients` (a strategy undoing
    the 1/n of the loss). When nothing before the rule depends on it (no
    clipping, attack, compression, momentum at the workers or server, and a
    `scale_equivariant` rule), the rule's (d,) output is scaled instead of its
    (n, d) input, a pass over the matrix saved; the study still records the
    scaled rows, on the steps it records.
    """
    n, d = gradients.shape
    if n != self.nb_workers:
      raise ValueError(f"expected gradients from {self.nb_workers} workers, got {n}")
    if present is not None and all(present):
      present = None
    if present is not None:
      if len(present) != n:
        raise ValueError(f"expected one presence flag per worker ({n}), got {len(present)}")
      if self.clip is not None or self.attack is not None or (self.momentum and self.momentum_at == "worker"):
        raise ValueError("absent rows are for a cluster's parameter server, whose workers clip, keep their "
                         "momentum and attack themselves: build its pipeline without clip, attack and worker momentum")
    self.build(d, gradients.dtype)
    scale_output = scale is not None and self._scale_commutes(present)
    if scale is not None and not scale_output:
      gradients = gradients * scale
    h = self.nb_honest
    sampled = gradients
    if self.clip is not None:
      sampled_norms = tf.norm(gradients, axis=1, keepdims=True)
      # 1.0 in the gradients' dtype: a bare Python float becomes float32 in a graph, failing on float64.
      gradients = gradients * tf.minimum(tf.constant(1.0, gradients.dtype), self.clip / tf.maximum(sampled_norms, 1e-30))
    if self.momentum and self.momentum_at == "worker":
      gradients = self._accumulate(self._worker_momentum, gradients)
    honest = gradients[:h]
    compressing = self.compressor is not None and not self.compressed_upstream
    if compressing:
      if present is not None:
        raise ValueError("absent rows come from worker processes, which compress their own rows: "
                         "compress_with(compressor, upstream=True)")
      honest = self._compress(honest, 0)
    if self.attack is not None and self.nb_real_byz_workers:
      byzantine = self.attack(honest, self.nb_real_byz_workers, self.nb_decl_byz_workers, gar=self.rule,
                              **self.attack_args)
      byzantine = tf.cast(byzantine, honest.dtype)
    else:
      byzantine = gradients[h:]
    if compressing and self.nb_real_byz_workers:
      byzantine = self._compress(byzantine, h)
    submitted = tf.concat([honest, byzantine], axis=0) if self.nb_real_byz_workers else honest
    received = submitted
    if self.momentum and self.momentum_at == "server":
      received = self._accumulate(self._worker_momentum, submitted, present)
    if present is None:
      aggregated, selected = self.rule.aggregate_and_select(received, self.nb_decl_byz_workers,
                                                            **self.aggregator_args)
    else:
      kept = tf.constant([[i] for i, here in enumerate(present) if here], tf.int32)
      aggregated, selected = self.rule.aggregate_and_select(tf.gather_nd(received, kept), self.nb_decl_byz_workers,
                                                            **self.aggregator_args)
      if selected is not None:
        selected = tf.scatter_nd(kept, selected, [n])
    if scale_output:
      aggregated = aggregated * scale
    if self.hold_undecided:
      aggregated = tf.where(tf.math.is_finite(aggregated), aggregated, tf.zeros_like(aggregated))
    applied = aggregated
    if self.momentum and self.momentum_at == "update":
      applied = self._accumulate(self._update_momentum, aggregated)
    counters = {}
    if self.compressor is not None:
      counters[BYTES_PER_WORKER] = tf.constant(float(self.compressor.payload_bytes), tf.float64)
    record = self.study.record(sampled=sampled[:h], submitted=submitted, aggregated=aggregated, selected=selected,
                               complete=present is None, counters=counters,
                               rows_scale=scale if scale_output else None)
    with tf.control_dependencies(record):
      return tf.identity(applied)

  def _scale_commutes(self, present: tuple[bool, ...] | None) -> bool:
    """Whether scaling the rows can wait until after the rule (see `__call__`)."""
    return (present is None and self.rule.scale_equivariant and self.clip is None and self.attack is None
            and self.compressor is None and not (self.momentum and self.momentum_at in ("worker", "server")))

  def _compress(self, rows: tf.Tensor, first: int) -> tf.Tensor:
    """What the parameter server decodes of rows first, first + 1, ...; their compressor state is updated."""
    stop = first + rows.shape[0]
    state = {name: variable[first:stop] for name, variable in self._compression_state.items()}
    payload, state = self.compressor.encode(rows, state)
    updates = [self._compression_state[name][first:stop].assign(value) for name, value in state.items()]
    with tf.control_dependencies(updates):
      return tf.cast(self.compressor.decode(payload), rows.dtype)

  def lookahead(self, worker: int | tf.Tensor) -> tf.Tensor:
    """The momentum along which Nesterov's variant moves worker `worker`'s weights before its gradient (d,).

    Its own momentum at the workers (or its row at the server), the update's momentum otherwise: the worker
    then computes its gradient at θ − lr·μ·m, as in El-Mhamdi et al.'s code for the Distributed Momentum paper.
    """
    self._require_state()
    if self.momentum_at in ("worker", "server") and self.momentum:
      return tf.gather(self._worker_momentum, worker)
    return self._update_momentum.read_value()

  def _require_state(self) -> None:
    if self._update_momentum is None:
      raise ValueError("the pipeline has no state yet: call build(d) first")

  def _accumulate(self, buffer: tf.Variable, values: tf.Tensor, present: tuple[bool, ...] | None = None) -> tf.Tensor:
    """m <- momentum * m + (1 - dampening) * values, returning the new m (rows of absent workers kept)."""
    updated = self.momentum * buffer + (1.0 - self.dampening) * values
    if present is not None:
      updated = tf.where(tf.constant(present)[:, None], updated, buffer)
    with tf.control_dependencies([buffer.assign(updated)]):
      return tf.identity(updated)

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    """Creates the state (momentum buffers, study variables) for d coordinates; idempotent.

    Called on the first aggregation; call it earlier to restore the state from a checkpoint.
    """
    if self._update_momentum is not None:
      if self._update_momentum.shape[0] != d:
        raise ValueError(f"this pipeline aggregates gradients of {self._update_momentum.shape[0]} coordinates, "
                         f"got {d}: use one strategy per model")
      return
    with tf.init_scope(), plain_variables():
      self._update_momentum = tf.Variable(tf.zeros([d], dtype), trainable=False, name="update_momentum")
      rows = self.nb_workers if self.momentum and self.momentum_at in ("worker", "server") else 0
      self._worker_momentum = tf.Variable(tf.zeros([rows, d], dtype), trainable=False, name="worker_momentum")
      self.study.create_state()
      self.rule.build(d, dtype)
      if self.compressor is not None and not self.compressed_upstream:
        if self.compressor.dimension != d:
          raise ValueError(f"the compressor is for {self.compressor.dimension} coordinates, the gradients have {d}")
        self._compression_state = {name: tf.Variable(value, trainable=False, name=f"compression_{name}")
                                   for name, value in self.compressor.init_state(self.nb_workers).items()}

  def variables(self) -> dict[str, tf.Variable]:
    """The state to checkpoint (after `build`), by name."""
    self._require_state()
    state = {"update_momentum": self._update_momentum, "worker_momentum": self._worker_momentum,
             "step": self.study.step, "selection_counts": self.study.selection_counts}
    # Names usable as checkpoint attributes: a chain's "centered-clipping.center" -> "rule_centered_clipping_center".
    state.update({"rule_" + re.sub(r"\W", "_", name): variable for name, variable in self.rule.variables().items()})
    state.update({"compression_" + name: variable for name, variable in self._compression_state.items()})
    return state


def plain_variables():
  """A scope where `tf.Variable` makes an ordinary variable, even inside a strategy's scope.

  The pipeline's state lives once, on the parameter server, not mirrored per replica.
  """
  from strategies import tf_internals  # pylint: disable=g-import-not-at-top

  def creator(next_creator, **kwargs):
    del next_creator
    return tf_internals.plain_variable(**kwargs)

  return tf.variable_creator_scope(creator)
