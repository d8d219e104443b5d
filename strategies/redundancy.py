"""The redundancy defences in training: the replicas compute the files, the pipeline votes and aggregates them.

With DETOX or ByzShield (see `aggregathor.redundancy`), K workers compute F
files of each batch, each file on r workers. Honest copies of a file are
equal, so the strategy's replicas are the F files, each computed once; the
pipeline then builds every worker's copies, the Byzantine workers' holding
the attack's one vector, votes per file, and runs the rule across the voted
files (see `aggregathor.redundancy.defence`). The gradients a real cluster
computes per step are F·r; here F.

Across processes (`across_processes=True`, a cluster's parameter server), the
input is instead the K workers' rows, each the gradients of the files the
placement gives that worker end to end, as the worker processes compute them
(a Byzantine process sending its attack's vector for each); the copies are
taken from them, an absent worker's copies vote for nothing, and a file none
of whose copies came is left out of the rule. The Byzantine set then serves
the study alone (the distorted files); the real ones are the processes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from aggregathor import attacks, gars, redundancy
from aggregathor.redundancy import defence
from strategies.pipeline import GradientPipeline, plain_variables
from strategies.study import StudyRecorder

BYZANTINE_SETS = ("worst", "random", "fixed", "benign", "whole-group")
DISTORTED_FILES = "redundancy/distorted-files"  # the study's column: the files whose vote the Byzantine workers won


class RedundancyPipeline(GradientPipeline):
  """A `GradientPipeline` over the F files' gradients, with the vote and the rule across files.

  placement: an `aggregathor.redundancy.Placement` (or a name, with
  nb_workers and replication). nb_byzantine (q) workers are Byzantine: the
  adversary's `worst` set (`Placement.worst_case`), a `random` set drawn each
  step, the `fixed` `byzantine_workers`, or DETOX's `benign` (one per group)
  and `whole-group` (the first q workers) sets. The rule's f across the files is
  the placement's c_max(q) (at most `buckets`) unless `nb_decl_byz_workers` is
  given. Clipping and momentum at the update work as in `GradientPipeline`.
  """

  def __init__(self, placement: redundancy.Placement, aggregator: str | gars.Rule, nb_byzantine: int = 0,
               attack: str | attacks.Attack | None = None, *, byzantine_set: str = "worst",
               byzantine_workers: Sequence[int] | None = None, buckets: int | None = None,
               nb_decl_byz_workers: int | None = None, aggregator_args: Mapping[str, Any] | None = None,
               attack_args: Mapping[str, Any] | None = None, momentum: float = 0.0, momentum_at: str = "update",
               dampening: float = 0.0, clip: float | None = None, study_period: int = 0, seed: int = 0,
               across_processes: bool = False):
    if across_processes:
      if attack is not None or clip is not None:
        raise ValueError("across processes the Byzantine workers are real processes and the workers clip: build "
                         "the parameter server's pipeline without attack and clip")
      if byzantine_set == "random":
        raise ValueError("across processes the Byzantine workers are fixed processes: name them with "
                         "--byzantine-set fixed --byzantine-workers, or use worst, benign or whole-group (for the "
                         "study of the distorted files)")
    if momentum and momentum_at != "update":
      raise ValueError("with a redundancy defence the momentum is at the update (--momentum-at update): the "
                       "workers' copies are voted on, not accumulated")
    if byzantine_set not in BYZANTINE_SETS:
      raise ValueError(f"expected the Byzantine set among {', '.join(BYZANTINE_SETS)}, got {byzantine_set!r}")
    if not 0 <= nb_byzantine < placement.nb_workers:
      raise ValueError(f"expected 0 <= Byzantine workers < {placement.nb_workers}, got {nb_byzantine}")
    if nb_byzantine and attack is None and not across_processes:
      raise ValueError("Byzantine workers need an attack: the vector all their copies send")
    if buckets is not None and not 1 <= buckets <= placement.nb_files:
      raise ValueError(f"expected 1 <= buckets <= {placement.nb_files} files, got {buckets}")
    files = placement.nb_files
    super().__init__(aggregator, files, 0, 0, None, aggregator_args, momentum=momentum, momentum_at=momentum_at,
                     dampening=dampening, clip=clip, study_period=study_period)
    # No selection across files is recorded; the distorted files are, beside the metrics.
    self.study = StudyRecorder(files, 0, study_period, selects=False, counters=(DISTORTED_FILES,))
    self.placement = placement
    self.nb_byzantine = nb_byzantine
    self.buckets = buckets
    self.byzantine_set = byzantine_set
    if byzantine_set == "fixed":
      workers = sorted(set(byzantine_workers or ()))
      if len(workers) != nb_byzantine or any(not 0 <= w < placement.nb_workers for w in workers):
        raise ValueError(f"--byzantine-workers must name {nb_byzantine} distinct workers in [0, "
                         f"{placement.nb_workers}), got {list(byzantine_workers or ())}")
      self.byzantine_workers = tuple(workers)
    elif byzantine_set == "worst":
      self.byzantine_workers = placement.worst_case(nb_byzantine).workers
    elif byzantine_set in ("benign", "whole-group"):
      method = getattr(placement, byzantine_set.replace("-", "_") + "_attack", None)
      if method is None:
        raise ValueError(f"the {byzantine_set} Byzantine set is DETOX's: use it with --redundancy detox")
      self.byzantine_workers = tuple(method(nb_byzantine))
    else:
      self.byzantine_workers = None  # drawn each step
    self.file_f = (defence.effective_f(placement, nb_byzantine, buckets) if nb_decl_byz_workers is None
                   else nb_decl_byz_workers)
    self.rule.check(buckets or files, self.file_f, **self.aggregator_args)
    self.file_attack = None if attack is None else attacks.get(attack)
    self.file_attack_args = {} if self.file_attack is None else self.file_attack.resolve_args(dict(attack_args or {}))
    if "gar_args" in self.file_attack_args and self.file_attack_args["gar_args"] is None:
      self.file_attack_args["gar_args"] = dict(self.aggregator_args)
    self.seed = seed
    self.across_processes = across_processes
    self._copy_workers = np.array(placement.files, np.int32)  # (F, r): the worker of each copy
    loads = set(int(load) for load in placement.loads)
    if across_processes and len(loads) != 1:
      raise ValueError(f"across processes every worker must compute as many files; {placement.name} gives "
                       f"{sorted(loads)}")
    self.files_per_worker = loads.pop() if len(loads) == 1 else 0
    # (F, r): where each copy is among the workers' rows cut in files, worker w's p-th file at w·L + p.
    self._copy_rows = np.array([[w * self.files_per_worker + placement.files_of(w).index(file) for w in workers]
                                for file, workers in enumerate(placement.files)], np.int32)
    self._generator: tf.random.Generator | None = None
    self.distorted_files: tf.Variable | None = None
    logging.info("Redundancy %s: %d workers, %d files of %d copies; %d Byzantine (%s set%s); the rule sees %d %s "
                 "with f=%d", placement.name, placement.nb_workers, files, placement.replication, nb_byzantine,
                 byzantine_set, f": workers {list(self.byzantine_workers)}" if self.byzantine_workers else "",
                 buckets or files, "buckets" if buckets else "files", self.file_f)

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    super().build(d, dtype)
    if self.distorted_files is None:
      with tf.init_scope(), plain_variables():
        self._generator = tf.random.Generator.from_seed(self.seed)
        self.distorted_files = tf.Variable(0, dtype=tf.int32, trainable=False, name="distorted_files")

  def variables(self) -> dict[str, tf.Variable]:
    state = super().variables()
    state["redundancy_generator"] = self._generator.state
    return state

  def _byzantine_mask(self) -> tf.Tensor:
    workers = self.placement.nb_workers
    if self.byzantine_workers is not None:
      mask = np.zeros(workers, bool)
      mask[list(self.byzantine_workers)] = True
      return tf.constant(mask)
    drawn = tf.argsort(self._generator.uniform([workers]))[:self.nb_byzantine]
    return tf.scatter_nd(drawn[:, None], tf.ones([self.nb_byzantine], tf.bool), [workers])

  def files_lost(self, present: Sequence[bool]) -> list[int]:
    """The files none of whose copies came, for the workers `present`."""
    return [file for file, workers in enumerate(self.placement.files) if not any(present[w] for w in workers)]

  def __call__(self, gradients: tf.Tensor, present: tuple[bool, ...] | None = None,
               scale: float | None = None) -> tf.Tensor:
    if scale is not None:  # the vote compares copies exactly: they are scaled first
      gradients = gradients * scale
    if self.across_processes:
      return self._from_workers(gradients, present)
    if present is not None:
      raise ValueError("absent rows are for a parameter server across processes (across_processes=True)")
    files, d = gradients.shape
    if files != self.nb_workers:
      raise ValueError(f"expected the gradients of the {self.nb_workers} files, got {files}")
    self.build(d, gradients.dtype)
    sampled = gradients
    if self.clip is not None:
      norms = tf.norm(gradients, axis=1, keepdims=True)
      gradients = gradients * tf.minimum(tf.constant(1.0, gradients.dtype), self.clip / tf.maximum(norms, 1e-30))
    copy_mask = tf.gather(self._byzantine_mask(), self._copy_workers)
    if self.file_attack is not None and self.nb_byzantine:
      attack_vector = tf.cast(self.file_attack(gradients, 1, self.file_f, gar=self.rule, **self.file_attack_args)[0],
                              gradients.dtype)
    else:
      attack_vector = tf.zeros([d], gradients.dtype)
    order = tf.argsort(self._generator.uniform([files])) if self.buckets else None
    aggregated, voted, distorted = defence.aggregate(gradients, copy_mask, attack_vector, self.rule, self.file_f,
                                                     self.aggregator_args, self.buckets, order)
    applied = aggregated
    if self.momentum:
      applied = self._accumulate(self._update_momentum, aggregated)
    count = self.distorted_files.assign(tf.reduce_sum(tf.cast(distorted, tf.int32)))
    record = self.study.record(sampled=sampled, submitted=voted, aggregated=aggregated, selected=None,
                               counters={DISTORTED_FILES: count})
    with tf.control_dependencies([*record, count]):
      return tf.identity(applied)

  def _from_workers(self, rows: tf.Tensor, present: tuple[bool, ...] | None) -> tf.Tensor:
    workers, width = rows.shape
    per_worker = self.files_per_worker
    if workers != self.placement.nb_workers or width % per_worker:
      raise ValueError(f"expected the rows of the {self.placement.nb_workers} workers, each {per_worker} files' "
                       f"gradients, got shape {rows.shape}")
    d = width // per_worker
    self.build(d, rows.dtype)
    copies_in_rows = tf.reshape(rows, [workers * per_worker, d])
    if present is not None:
      # An absent worker's copies are NaN, which equals nothing: they vote for no value.
      came = np.repeat(np.asarray(present, bool), per_worker)
      copies_in_rows = tf.where(tf.constant(came)[:, None], copies_in_rows, tf.constant(np.nan, rows.dtype))
    copies = tf.gather(copies_in_rows, self._copy_rows)  # (F, r, d)
    lost = self.files_lost(present) if present is not None else []
    if lost:
      kept = [file for file in range(self.placement.nb_files) if file not in lost]
      copies = tf.gather(copies, kept)
    files = copies.shape[0]
    buckets = min(self.buckets, files) if self.buckets else None
    order = tf.argsort(self._generator.uniform([files])) if buckets else None
    aggregated, voted = defence.vote_and_aggregate(copies, self.rule, self.file_f, self.aggregator_args, buckets,
                                                   order)
    applied = aggregated
    if self.momentum:
      applied = self._accumulate(self._update_momentum, aggregated)
    copy_mask = tf.gather(self._byzantine_mask(), self._copy_workers)
    distorted = tf.reduce_sum(tf.cast(copy_mask, tf.int32), axis=1) >= self.placement.majority
    count = self.distorted_files.assign(tf.reduce_sum(tf.cast(distorted, tf.int32)))
    record = self.study.record(sampled=voted, submitted=voted, aggregated=aggregated, selected=None,
                               complete=present is None, counters={DISTORTED_FILES: count})
    with tf.control_dependencies([*record, count]):
      return tf.identity(applied)
