"""The training loop behind runner.py: steps, checkpoints, evaluations, TensorBoard summaries and the study.

    config = TrainingConfig(experiment="digits", aggregator="krum", nb_workers=7, nb_decl_byz_workers=2,
                            nb_real_byz_workers=2, attack="little", max_steps=300, checkpoint_dir="runs/ckpt")
    status = Training(config).run()

`Training(config)` builds everything and raises `ValueError` (or
`FileNotFoundError` for missing data) for a bad configuration, before any step
runs. `run()` trains; whatever ends it (the step budget, SIGTERM, Ctrl-C or an
exception), the checkpoint of the last step is saved first.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import experiments
from aggregathor import gars
from strategies import provenance, schedules
from strategies.byzantine import ByzantineStrategy
from strategies.cluster.spec import ClusterError
from strategies.pipeline import GradientPipeline
from strategies.summaries import StudyWriter

OPTIMIZERS = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion",
}


@dataclasses.dataclass
class TrainingConfig:
  """What to train and what to write; the fields mirror runner.py's flags.

  `max_steps` counts the steps this run performs (<= 0: no limit), on top of
  those of the checkpoint it resumes. `-delta` fields count steps and `-period`
  fields seconds; a non-positive value disables that trigger. A `None` output
  path writes nothing of that kind.
  """

  experiment: str = "digits"
  experiment_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  seed: int = 0
  aggregator: str = "average"
  aggregator_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  nb_workers: int = 1
  nb_decl_byz_workers: int = 0
  nb_real_byz_workers: int = 0
  attack: str | None = None
  attack_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  label_flip: bool = False
  optimizer: str = "sgd"
  optimizer_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # Keras keyword arguments
  learning_rate: str = "fixed"
  learning_rate_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  l1_regularize: float = 0.0
  l2_regularize: float = 0.0
  momentum: float = 0.0
  momentum_at: str = "update"
  dampening: float = 0.0
  nesterov: bool = False
  gradient_clip: float | None = None
  local_steps: int = 1
  # FedAvg's local epochs (0: none): that many passes over each worker's share between communications, as
  # local_steps of the experiment's batch size (rounded, at least one), which it then replaces.
  local_epochs: float = 0.0
  max_steps: int = 1000
  checkpoint_dir: str | None = None
  checkpoint_delta: int = -1
  checkpoint_period: float = 600
  summary_dir: str | None = None
  summary_delta: int = -1
  summary_period: float = 30
  evaluation_file: str | None = None
  evaluation_delta: int = -1
  evaluation_period: float = 60
  study_period: int = 0
  study_file: str | None = None
  log_period: float = 10
  trace: bool = False
  no_wait: bool = False
  # Cluster mode: the worker tasks ("host:port", in worker order), the parameter server's credentials directory
  # (see strategies.cluster.credentials), and each step's deadline (the first step's, while the workers build).
  workers: list[str] | None = None
  credentials: str = "credentials"
  step_timeout: float = 10.0
  start_timeout: float = 120.0
  # "grpc": the parameter server calls its workers over mutual TLS and runs nothing they send (the default);
  # "tf": TensorFlow's runtime in-graph, for trusted networks only (see strategies.cluster.in_graph), which needs
  # the whole cluster (job -> tasks) and the parameter server's and workers' job names.
  # "mpi": this process is rank 0 of an MPI job whose ranks 1 to nb_workers are the workers (runner.py --MPI under
  # mpirun, see strategies.cluster.mpi); give no workers nor cluster, and the attack is the last
  # nb_real_byz_workers ranks' to run.
  transport: str = "grpc"
  cluster: dict[str, list[str]] | None = None
  # A redundancy defence (see strategies.redundancy): the placement's name and arguments, each file's
  # replication, the adversary's set of nb_real_byz_workers workers ("worst", "random" or "fixed", then
  # byzantine_workers), and the buckets the voted files are averaged in (None: none).
  redundancy: str | None = None
  redundancy_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  replication: int = 3
  byzantine_set: str = "worst"
  byzantine_workers: list[int] | None = None
  buckets: int | None = None
  # Gradient compression (see aggregathor.compression): the compressor's name and arguments (None: none).
  compression: str | None = None
  compression_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  # AdaComp's asynchronous parameter server (see strategies.asynchronous): each worker's gradient applied as it
  # arrives, on the weights it fetched, divided per coordinate by its staleness; the workers' simulated compute
  # times spread from mean 1 (worker 0) to 1 + delay_spread (the last).
  asynchronous: bool = False
  delay_spread: float = 1.0
  ps_job: str = "ps"
  worker_job: str = "workers"
  # Over the gRPC transport: the first udp_workers workers send their rows as authenticated UDP datagrams of
  # udp_datagram_bytes to the parameter server's task address (see strategies.cluster.udp); what did not come is
  # filled by udp_fill ("nan", "zero" or "last"), waiting udp_linger seconds past a worker's answer.
  # HiPS (see strategies.hierarchy): the workers in `parties` contiguous parties (0: none), each aggregated by
  # `aggregator` with nb_decl_byz_workers per party, the parties by `global_aggregator` with nb_decl_byz_parties,
  # each party's push compressed by `party_compression` (e.g. "2bit") with its own residual.
  parties: int = 0
  global_aggregator: str = "average"
  global_aggregator_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  nb_decl_byz_parties: int = 0
  party_compression: str | None = None
  party_compression_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  # With `asynchronous` too, HiPS's global PS applies each party's aggregate alone as it arrives (see
  # strategies.global_updates), by "asgd" or "dc-asgd" with dc_lambda and dc_weight_decay; the parties' simulated
  # compute times spread as the workers' do in AdaComp's mode.
  global_update: str = "asgd"
  dc_lambda: float = 0.04
  dc_weight_decay: float = 0.0
  udp_workers: int = 0
  udp_datagram_bytes: int = 1472
  udp_fill: str = "nan"
  udp_linger: float = 0.005

  def get_config(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "TrainingConfig":
    return cls(**config)


WARMUP_STEPS = 10  # steps left out of the steady-state rate printed at the end


class Trigger:
  """Fires every `delta` steps and/or every `period` seconds (non-positive: never)."""

  def __init__(self, delta: int, period: float):
    self.delta = delta
    self.period = period
    self.last_time = time.monotonic()

  def __call__(self, step: int) -> bool:
    now = time.monotonic()
    fired = (self.delta > 0 and step % self.delta == 0) or (self.period > 0 and now - self.last_time >= self.period)
    if fired:
      self.last_time = now
    return fired


def first_line(error: BaseException) -> str:
  """An exception's first message line (its type's name when it has no message), for a one-line error."""
  message = str(error).strip()
  return message.splitlines()[0] if message else type(error).__name__


def has_initial_weights(checkpoint_path: str) -> bool:
  """Whether a training checkpoint holds the weights its run started from."""
  try:
    names = [name for name, _ in tf.train.list_variables(checkpoint_path)]
  except tf.errors.OpError:
    return False  # unreadable: the restore that follows says so
  return any(name.startswith("initial_weights/") for name in names)


def penalised_indices(model: keras.Model) -> list[int]:
  """The indices of the trainable variables that the L1/L2 penalties apply to: the kernels (rank >= 2), not biases."""
  return [i for i, v in enumerate(model.trainable_variables) if len(v.shape) > 1]


def penalised_loss(logits: tf.Tensor, labels: tf.Tensor, penalised: list[tf.Tensor], l1: float, l2: float) -> tf.Tensor:
  """Mean cross-entropy of the logits, plus l1 * sum |w| and l2 * sum w² over the `penalised` weights."""
  loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
  if l1:
    loss += l1 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in penalised])
  if l2:
    loss += l2 * tf.add_n([tf.reduce_sum(tf.square(w)) for w in penalised])
  return loss


def accuracy_of(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """The fraction of the labels that the logits' argmax gets right."""
  return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                         tf.cast(labels, tf.int32)), tf.float32))


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
  """The rate the optimizer applies now: a fixed rate is a (possibly mirrored) variable, a schedule a tensor."""
  return float(tf.convert_to_tensor(optimizer.learning_rate))


def trim_evaluations(path: str, resumed_step: int) -> int:
  """Drops the evaluation lines that a resumed run will write again; returns how many were dropped.

  A run killed after an evaluation but before the next checkpoint resumes from
  an earlier step and evaluates those steps again: the lines past
  `resumed_step`, and a line cut short by the kill, go, so that each step is
  evaluated once in the file. The rewrite is atomic (a new file, then a rename).
  """
  try:
    with open(path, encoding="utf-8") as file:
      text = file.read()
  except FileNotFoundError:
    return 0
  lines = text.split("\n")
  kept = [line for line in lines[:-1] if _evaluation_step(line) is None or _evaluation_step(line) <= resumed_step]
  dropped = len(lines) - 1 - len(kept) + (1 if lines[-1] else 0)
  if dropped:
    temporary = f"{path}.trimmed"
    with open(temporary, "w", encoding="utf-8") as file:
      file.write("".join(line + "\n" for line in kept))
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, path)
    logging.info("Dropped %d evaluation line(s) of %s past the resumed step %d: this run evaluates them again",
                 dropped, path, resumed_step)
  return dropped


def absorbs_lost_coordinates(rule: gars.Rule, n: int, f: int, args: dict[str, Any]) -> bool:
  """Whether `rule` gives a finite result when every row has one NaN coordinate, no two rows the same one.

  What a lossy UDP link does to rows whose lost chunks are NaN: coordinate-wise
  rules pass this (each coordinate has a single NaN), rules that score whole
  rows (Krum, Bulyan, ...) do not.
  """
  rows = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
  np.fill_diagonal(rows, np.nan)
  try:
    result = rule.aggregate(tf.constant(rows), f, **args)
  except (ValueError, tf.errors.InvalidArgumentError):
    return False
  return bool(np.isfinite(result.numpy()).all())


def _evaluation_step(line: str) -> int | None:
  fields = line.split("\t")
  try:
    return int(fields[1])
  except (IndexError, ValueError):
    return None


def evaluation_step(model: keras.Model):
  """The `tf.function` of one test batch: (sum of losses, number correct, batch size), in float64."""

  @tf.function
  def eval_batch(x, y):
    logits = model(x, training=False)
    loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32)), tf.float64)
    return tf.reduce_sum(tf.cast(loss, tf.float64)), tf.reduce_sum(correct), tf.cast(tf.shape(y)[0], tf.float64)

  return eval_batch


def evaluate(eval_batch, dataset: tf.data.Dataset) -> dict[str, float]:
  """Accuracy and mean loss over `dataset`, with `evaluation_step`'s function."""
  total_loss = total_correct = count = 0.0
  for x, y in dataset:
    loss, correct, size = eval_batch(x, y)
    total_loss += float(loss)
    total_correct += float(correct)
    count += float(size)
  return {"accuracy": total_correct / count, "loss": total_loss / count}


def evaluation_line(step: int, results: dict[str, float]) -> str:
  """A line of the evaluation file: wall time, step, then key:value pairs, tab-separated."""
  return "\t".join([f"{time.time():.3f}", str(step)] + [f"{k}:{v:.6g}" for k, v in results.items()])


def local_steps_for_epochs(experiment: Any, nb_workers: int, epochs: float, local_steps: int = 1) -> int:
  """FedAvg's local epochs as local steps: `epochs` passes over a worker's mean share, rounded, at least one."""
  if not epochs > 0 or local_steps != 1:
    raise ValueError(f"expected local epochs > 0 in place of local steps, got {epochs} epochs and {local_steps} "
                     "local steps: give one of them")
  share = len(experiment.load().y_train) / nb_workers
  steps = max(1, round(epochs * share / experiment.args["batch-size"]))
  logging.info("%g local epochs: %d local steps of %d examples over a worker's share of %d", epochs, steps,
               experiment.args["batch-size"], int(share))
  return steps


class Training:
  """One run: built from a `TrainingConfig`, resumed from its checkpoint directory, trained by `run()`."""

  def __init__(self, config: TrainingConfig):
    if config.transport not in ("grpc", "tf", "mpi"):
      raise ValueError(f"unknown transport {config.transport!r}: expected 'grpc' (the default), 'tf' or 'mpi'")
    if config.transport == "mpi":
      if config.workers or config.cluster:
        raise ValueError("the MPI transport's workers are ranks 1 to n of the MPI job: give it neither workers "
                         "nor a cluster (runner.py: --MPI without --server)")
      if config.udp_workers:
        raise ValueError("--UDP sends worker processes' rows to a parameter server's address; over --MPI every row "
                         "goes through the MPI job: drop --UDP")
      config = dataclasses.replace(config, workers=[f"MPI rank {rank}" for rank in range(1, config.nb_workers + 1)])
    self.party_job: dict[str, Any] | None = None
    if config.parties and config.workers:
      config = self._party_cluster_view(config)
    self.config = config
    self.in_graph = bool(config.workers) and config.transport == "tf"
    if config.asynchronous and not config.parties and self.party_job is None:
      problems = [flag for flag, used in (
          ("--MPI", config.transport == "mpi"), ("--transport tf", config.workers and config.transport == "tf"),
          ("--UDP", config.udp_workers), ("--redundancy", config.redundancy), ("--attack", config.attack),
          ("--label-flip", config.label_flip), ("--local-steps", config.local_steps != 1 or config.local_epochs),
          ("--study-period", config.study_period), ("--momentum", config.momentum),
          ("--aggregator", config.aggregator != "average")) if used]
      if problems:
        raise ValueError(f"--asynchronous applies each worker's gradient alone as it arrives, in local mode or over "
                         f"the default transport: drop {', '.join(problems)} (there is no rule across workers to "
                         "defend or study, and MPI's collectives wait for every rank)")
    if config.nesterov:
      problems = [flag for flag, used in (
          ("--server", config.workers), ("--redundancy", config.redundancy), ("--asynchronous", config.asynchronous),
          ("--local-steps", config.local_steps != 1 or config.local_epochs),
          ("--optimizer", config.optimizer != "sgd")) if used]
      if not config.momentum:
        raise ValueError("--nesterov moves the weights along the momentum: give --momentum too")
      if problems:
        raise ValueError(f"--nesterov runs in local mode with plain SGD, one local step: drop {', '.join(problems)}")
    if config.compression and (config.redundancy or self.in_graph or config.udp_workers):
      raise ValueError("--compression: the workers (simulated, or worker processes over the default transport or "
                       "MPI) compress and the parameter server decodes before the rule; it takes neither "
                       "--redundancy, --transport tf nor --UDP")
    if config.udp_workers and (not config.workers or self.in_graph or config.cluster is None):
      raise ValueError("--UDP sends worker processes' rows to this parameter server: it needs --server JSON and "
                       "the gRPC transport (the default)")
    if config.udp_workers and config.redundancy:
      raise ValueError("--UDP with --redundancy: the vote compares whole copies of each file, and a copy with a "
                       "lost chunk would match none; run the redundancy defences over the default transport")
    if self.in_graph and config.redundancy:
      raise ValueError("--redundancy runs over the gRPC transport (the default), not --transport tf: the parameter "
                       "server votes on the copies that the worker processes send")
    if self.in_graph:
      # Before anything else runs: TensorFlow's context is rebuilt when it joins a cluster.
      from strategies.cluster import in_graph, spec  # pylint: disable=g-import-not-at-top
      if config.cluster is None:
        raise ValueError("the in-graph transport needs the whole cluster (TrainingConfig.cluster)")
      worker_devices = in_graph.connect(spec.ClusterSpec(config.cluster), config.ps_job, config.worker_job,
                                        config.start_timeout)
    experiment = experiments.get(config.experiment, **config.experiment_args)
    if config.local_epochs:
      config = self.config = dataclasses.replace(config, local_steps=local_steps_for_epochs(
          experiment, self.party_job["nb_workers"] if self.party_job else config.nb_workers, config.local_epochs,
          config.local_steps))
    learning_rate = schedules.build(config.learning_rate, config.learning_rate_args)
    keras.utils.set_random_seed(config.seed)
    rule = gars.get(config.aggregator)
    aggregator_args = config.aggregator_args
    if config.parties:
      rule, aggregator_args = self._hierarchical_rule(rule), {}
    self.pool = None
    if self.in_graph:
      # The in-graph transport: the local strategy's replicas are the workers' devices.
      if len(config.workers) != config.nb_workers:
        raise ValueError(f"--nb-workers is {config.nb_workers} but the worker job has {len(config.workers)} "
                         "task(s): make them match")
      self.strategy = in_graph.InGraphStrategy(
          rule, config.nb_workers, config.nb_decl_byz_workers, config.nb_real_byz_workers, config.attack,
          config.aggregator_args, config.attack_args, devices=worker_devices,
          ps_device=in_graph.task_device(config.ps_job, 0), momentum=config.momentum,
          momentum_at=config.momentum_at, dampening=config.dampening, clip=config.gradient_clip,
          study_period=config.study_period)
      self.pipeline = self.strategy.pipeline
    elif config.workers:
      # Cluster mode: the workers clip, keep their momentum and attack in their own processes.
      self._check_cluster(rule)
      self.strategy = tf.distribute.get_strategy()
      if config.redundancy:
        self.pipeline = self._redundancy_pipeline(rule, across_processes=True)
      else:
        self.pipeline = GradientPipeline(
            rule, config.nb_workers, config.nb_decl_byz_workers, config.nb_real_byz_workers, None,
            config.aggregator_args, momentum=0.0 if config.momentum_at == "worker" else config.momentum,
            momentum_at=config.momentum_at, dampening=config.dampening, study_period=config.study_period,
            hold_undecided=bool(config.udp_workers) and config.udp_fill == "nan")
    elif config.redundancy:
      self.pipeline = self._redundancy_pipeline(rule)
      self.strategy = ByzantineStrategy(rule, self.pipeline.nb_workers, pipeline=self.pipeline)
    else:
      self.strategy = ByzantineStrategy(
          rule, config.nb_workers, config.nb_decl_byz_workers, config.nb_real_byz_workers,
          config.attack, aggregator_args, config.attack_args, momentum=config.momentum,
          momentum_at=config.momentum_at, dampening=config.dampening, clip=config.gradient_clip,
          study_period=config.study_period)
      self.pipeline = self.strategy.pipeline
    self.experiment = experiment
    data = experiment.load()
    logging.info("%s: %d training and %d test examples; %d workers (%d Byzantine, f=%d declared), rule %s%s%s",
                 experiment.name, len(data.y_train), len(data.y_test), config.nb_workers,
                 config.nb_real_byz_workers, config.nb_decl_byz_workers, config.aggregator,
                 f", attack {config.attack}" if config.attack else "",
                 f", on the worker processes at {', '.join(config.workers)}" if config.workers else "")
    with self.strategy.scope():
      self.model = experiment.build_model()
      self.optimizer = getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=learning_rate,
                                                                                **config.optimizer_args)
      self.optimizer.build(self.model.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    # Each trainable variable's size, in the order of the flat (d,) rows the pipeline aggregates.
    self.variable_sizes = [int(np.prod(v.shape)) for v in self.model.trainable_variables]
    self.dimension = sum(self.variable_sizes)
    # Asynchronous: one worker's gradient a step, or one party's workers' rows (on average, the parties' sizes
    # differing by one at most).
    senders = (config.nb_workers / config.parties if config.parties else 1) if config.asynchronous else \
        self.nb_replicas
    self.float_bytes_per_step = 4 * self.dimension * senders  # float32 rows, uncompressed
    self.sent_bytes_per_step = self.float_bytes_per_step
    compressor = self.compressor = None
    if config.compression:
      from aggregathor import compression  # pylint: disable=g-import-not-at-top
      compressor = compression.get(config.compression, self.dimension, self.variable_sizes,
                                   **config.compression_args)
      self.compressor = compressor
      if not config.asynchronous:
        # On a cluster, the worker processes compress and the pool decodes: the pipeline counts the bytes.
        self.pipeline.compress_with(compressor, upstream=bool(config.workers))
      self.sent_bytes_per_step = compressor.payload_bytes * senders
      logging.info("Compression %s: %d bytes a worker a step, %.1fx less than the %d of a float32 row",
                   compressor.name, compressor.payload_bytes, 4 * self.dimension / compressor.payload_bytes,
                   4 * self.dimension)
    self.party_bytes_per_step = 0
    party_compressor = None
    pushes = 1 if config.asynchronous else config.parties  # asynchronous: one party's push a step
    if config.parties:
      # Each party's push to the global PS, as a float32 row or compressed with the party's own residual.
      self.party_bytes_per_step = 4 * self.dimension * pushes
      if config.party_compression:
        from aggregathor import compression  # pylint: disable=g-import-not-at-top
        party_compressor = compression.get(config.party_compression, self.dimension, self.variable_sizes,
                                           **config.party_compression_args)
        if not config.asynchronous:
          self.pipeline.rule.compress_pushes_with(party_compressor)
        self.party_bytes_per_step = party_compressor.payload_bytes * pushes
    self.pipeline.build(self.dimension, tf.float32)
    self.server = self.global_server = None
    self.party_pipelines: list[GradientPipeline] = []
    if config.parties and config.asynchronous:
      from strategies.global_updates import GlobalServer  # pylint: disable=g-import-not-at-top
      self.party_pipelines = self._party_pipelines()
      self.global_server = GlobalServer(config.parties, self.dimension, config.global_update, config.dc_lambda,
                                        config.dc_weight_decay, party_compressor, config.delay_spread,
                                        seed=config.seed)
    elif config.asynchronous and self.party_job is not None:
      from strategies.global_updates import GlobalServer  # pylint: disable=g-import-not-at-top
      # The party servers compress their pushes; the pool decodes them.
      self.server = self.global_server = GlobalServer(
          config.nb_workers, self.dimension, config.global_update, config.dc_lambda, config.dc_weight_decay,
          delay_spread=config.delay_spread, seed=config.seed)
    elif config.asynchronous:
      from strategies.asynchronous import AsynchronousServer  # pylint: disable=g-import-not-at-top
      # On a cluster the worker processes compress, and the pool decodes before the server.
      self.server = AsynchronousServer(config.nb_workers, self.dimension, None if config.workers else compressor,
                                       config.delay_spread,
                                       seed=config.seed)
    self._restore(learning_rate)
    self._test_dataset = experiment.test_dataset()
    self._eval_batch = self._evaluation_step()
    if config.workers and not self.in_graph:
      self._start_pool()

  def _hierarchical_rule(self, local: gars.Rule) -> gars.Rule:
    """HiPS's two levels, in local mode: the parties' rule, then the global one (see strategies.hierarchy)."""
    from strategies import hierarchy  # pylint: disable=g-import-not-at-top
    config = self.config
    if config.redundancy:
      raise ValueError("--parties and --redundancy are two ways of grouping the workers, and they do not combine: "
                       "drop one of them")
    if config.asynchronous:
      problems = [flag for flag, used in (
          ("--global-aggregator", config.global_aggregator != "average" or config.global_aggregator_args),
          ("--nb-decl-byz-parties", config.nb_decl_byz_parties), ("--momentum", config.momentum),
          ("--nesterov", config.nesterov), ("--study-period", config.study_period),
          ("--compression", config.compression), ("--optimizer", config.optimizer != "sgd")) if used]
      if problems:
        raise ValueError(f"--parties with --asynchronous applies each party's aggregate alone as it arrives, by "
                         f"plain SGD (ASGD or DC-ASGD): drop {', '.join(problems)} (there is no rule across the "
                         "parties: to filter a Byzantine party, run synchronously with a robust --global-aggregator)")
      for start, stop in hierarchy.party_bounds(config.nb_workers, config.parties):
        if start >= config.nb_workers - config.nb_real_byz_workers:
          raise ValueError(f"with --asynchronous each party's workers are aggregated alone, and party of workers "
                           f"{start} to {stop - 1} would have no honest worker: use fewer --nb-real-byz-workers, "
                           "or run synchronously with a robust --global-aggregator against a Byzantine party")
    elif config.global_update != "asgd" or config.dc_lambda != 0.04 or config.dc_weight_decay:
      raise ValueError("--global-update, --dc-lambda and --dc-weight-decay are for HiPS's asynchronous global PS: "
                       "give --asynchronous too")
    rule = hierarchy.HierarchicalRule(local, config.parties, gars.get(config.global_aggregator),
                                      config.nb_decl_byz_parties, local_args=config.aggregator_args,
                                      global_args=config.global_aggregator_args)
    rule.check(config.nb_workers, config.nb_decl_byz_workers)
    logging.info("HiPS: %d workers in %d parties (%s), each aggregated by %s with f=%d, the parties by %s with f=%d",
                 config.nb_workers, config.parties,
                 ", ".join(str(stop - start) for start, stop in hierarchy.party_bounds(config.nb_workers,
                                                                                       config.parties)),
                 config.aggregator, config.nb_decl_byz_workers, config.global_aggregator, config.nb_decl_byz_parties)
    return rule

  def _party_cluster_view(self, config: TrainingConfig) -> TrainingConfig:
    """HiPS across processes: this PS's workers are the P party servers (see strategies.cluster.party).

    The global PS is then a one-level PS of P workers: the global rule with nb_decl_byz_parties, each party
    server's push compressed upstream with its own residual; asynchronously, HiPS's global PS (ASGD or
    DC-ASGD). What the party servers need of the party level (all n workers, the local rule and f, the local
    steps) goes in their "party" job.
    """
    problems = [flag for flag, used in (
        ("--MPI/--transport tf", config.transport != "grpc"), ("--UDP", config.udp_workers),
        ("--redundancy", config.redundancy), ("--compression", config.compression),
        ("--momentum (but at the workers)", config.momentum and config.momentum_at != "worker"),
        ("--study-period", config.study_period), ("--nesterov", config.nesterov)) if used]
    if problems:
      raise ValueError(f"--parties with --server: the workers are the parties' servers, each relaying its party's "
                       f"aggregate; drop {', '.join(problems)}")
    if config.asynchronous and (config.global_aggregator != "average" or config.nb_decl_byz_parties):
      raise ValueError("--parties with --asynchronous applies each party's aggregate alone as it arrives: drop "
                       "--global-aggregator and --nb-decl-byz-parties (to filter a Byzantine party, run "
                       "synchronously with a robust --global-aggregator)")
    if len(config.workers) != config.parties:
      raise ValueError(f"--parties is {config.parties} but the worker job has {len(config.workers)} task(s): with "
                       "--server, the global cluster's workers are the parties' servers (deploy.py --party-cluster)")
    from strategies import hierarchy  # pylint: disable=g-import-not-at-top
    for start, stop in hierarchy.party_bounds(config.nb_workers, config.parties):
      gars.get(config.aggregator).check(stop - start, config.nb_decl_byz_workers, **config.aggregator_args)
    self.party_job = {"kind": "party", "parties": config.parties, "nb_workers": config.nb_workers,
                      "nb_decl_byz_workers": config.nb_decl_byz_workers,
                      "nb_real_byz_workers": config.nb_real_byz_workers, "aggregator": config.aggregator,
                      "aggregator_args": config.aggregator_args}
    logging.info("HiPS across processes: %d workers in %d parties, each party's server aggregating by %s with f=%d; "
                 "this global PS aggregates the parties by %s with f=%d%s", config.nb_workers, config.parties,
                 config.aggregator, config.nb_decl_byz_workers, config.global_aggregator, config.nb_decl_byz_parties,
                 f", asynchronously ({config.global_update})" if config.asynchronous else "")
    return dataclasses.replace(
        config, nb_workers=config.parties, nb_decl_byz_workers=config.nb_decl_byz_parties, nb_real_byz_workers=0,
        aggregator=config.global_aggregator, aggregator_args=config.global_aggregator_args,
        compression=config.party_compression, compression_args=config.party_compression_args, parties=0,
        global_aggregator="average", global_aggregator_args={}, nb_decl_byz_parties=0, party_compression=None,
        party_compression_args={})

  def _party_pipelines(self) -> list[GradientPipeline]:
    """Asynchronous HiPS: each party's PS, its workers' rows through the attack, clipping and its local rule."""
    from strategies import hierarchy  # pylint: disable=g-import-not-at-top
    config = self.config
    first_byzantine = config.nb_workers - config.nb_real_byz_workers
    pipelines = []
    for start, stop in hierarchy.party_bounds(config.nb_workers, config.parties):
      pipeline = GradientPipeline(config.aggregator, stop - start, config.nb_decl_byz_workers,
                                  max(0, stop - max(start, first_byzantine)), config.attack, config.aggregator_args,
                                  config.attack_args, clip=config.gradient_clip)
      pipeline.build(self.dimension, tf.float32)
      pipelines.append(pipeline)
    return pipelines

  def _redundancy_pipeline(self, rule: gars.Rule, across_processes: bool = False):
    """DETOX or ByzShield: the files' gradients (locally, one replica per file), the vote and the rule across them."""
    from aggregathor import redundancy  # pylint: disable=g-import-not-at-top
    from strategies.redundancy import RedundancyPipeline  # pylint: disable=g-import-not-at-top
    config = self.config
    if config.label_flip or config.local_steps != 1:
      raise ValueError("--redundancy takes neither --label-flip nor --local-steps: the files' copies are voted on")
    placement = redundancy.get(config.redundancy, nb_workers=config.nb_workers, replication=config.replication,
                               **config.redundancy_args)
    return RedundancyPipeline(
        placement, rule, config.nb_real_byz_workers, None if across_processes else config.attack,
        byzantine_set=config.byzantine_set, byzantine_workers=config.byzantine_workers, buckets=config.buckets,
        nb_decl_byz_workers=config.nb_decl_byz_workers or None, aggregator_args=config.aggregator_args,
        attack_args=config.attack_args, momentum=config.momentum, momentum_at=config.momentum_at,
        dampening=config.dampening, clip=None if across_processes else config.gradient_clip,
        study_period=config.study_period, seed=config.seed, across_processes=across_processes)

  @property
  def nb_replicas(self) -> int:
    """The strategy's replicas: the workers, or with a redundancy defence the files."""
    return self.pipeline.nb_workers

  @property
  def nb_honest_replicas(self) -> int:
    """The replicas whose loss and accuracy are the model's (a redundancy defence's files are all honest)."""
    return self.nb_replicas - (0 if self.config.redundancy else self.config.nb_real_byz_workers)

  def _check_cluster(self, rule: gars.Rule) -> None:
    """What cluster mode refuses, and how many absent workers the rule tolerates (said once, at start-up)."""
    config = self.config
    if len(config.workers) != config.nb_workers:
      raise ValueError(f"--nb-workers is {config.nb_workers} but the worker job has {len(config.workers)} task(s): "
                       "make them match")
    if config.attack and config.transport != "mpi":  # over MPI, the attack is the Byzantine ranks' own
      raise ValueError("--attack simulates Byzantine workers inside this process; on a cluster they are real "
                       "processes: start those workers with `deploy.py ... --attack NAME`, and give this parameter "
                       "server --nb-real-byz-workers for the study only")
    from strategies.cluster import quorum  # pylint: disable=g-import-not-at-top
    if config.redundancy:
      self.tolerated_missing = None  # each step: whether the rule holds on the files of which a copy came
      return
    self.tolerated_missing = quorum.tolerated_missing(rule, config.aggregator, config.nb_workers,
                                                      config.nb_decl_byz_workers, config.aggregator_args)
    logging.info("A step goes on without up to %d absent worker(s) (deadline %g s, %g s for the first step)",
                 self.tolerated_missing, config.step_timeout, config.start_timeout)
    if config.udp_workers and config.udp_fill == "nan" and not absorbs_lost_coordinates(
        rule, config.nb_workers, config.nb_decl_byz_workers, config.aggregator_args):
      raise ValueError(f"--UDP with --udp-fill nan: a lost chunk leaves NaN coordinates in a row, and "
                       f"{config.aggregator} then refuses whole rows (it scores rows, not coordinates), so a lossy "
                       "network would leave it nothing: use a coordinate-wise rule (median, trimmed-mean, phocas, "
                       "averaged-median, average-nan) or --udp-fill zero|last")

  def _start_pool(self) -> None:
    config = self.config
    if config.transport == "mpi":
      from strategies.cluster import in_graph, mpi  # pylint: disable=g-import-not-at-top
      # Past a collective's deadline: this step has not updated the variables, so they hold the last step's state.
      self.pool = mpi.MpiPool(config.nb_workers, config.step_timeout, config.start_timeout,
                              on_lost=lambda status: in_graph.save_then_exit(self.manager, int(self.step.numpy()),
                                                                             status=status))
    else:
      from strategies.cluster import pool, spec  # pylint: disable=g-import-not-at-top
      addresses = [spec.parse_address(task, "worker task") for task in config.workers]
      self.pool = pool.WorkerPool(addresses, config.credentials, config.step_timeout, config.start_timeout)
    try:
      self._configure_pool()
    except BaseException:
      self.pool.close()  # over MPI, this ends the worker ranks' loop
      raise

  def _configure_pool(self) -> None:
    config = self.config
    self.pool.configure({
        "run": os.urandom(8).hex(), "kind": "experiment", "experiment": config.experiment, "experiment_args": config.experiment_args,
        "seed": config.seed, "worker": 0, "nb_workers": config.nb_workers,
        "nb_decl_byz_workers": config.nb_decl_byz_workers, "nb_real_byz_workers": config.nb_real_byz_workers,
        "label_flip": config.label_flip, "aggregator": config.aggregator, "aggregator_args": config.aggregator_args,
        "l1_regularize": config.l1_regularize, "l2_regularize": config.l2_regularize,
        "gradient_clip": config.gradient_clip, "momentum": config.momentum, "dampening": config.dampening,
        "momentum_at": config.momentum_at, "dimension": self.dimension, "local_steps": config.local_steps,
        "learning_rate": config.learning_rate, "learning_rate_args": config.learning_rate_args,
        "redundancy": {"placement": config.redundancy, "replication": config.replication,
                       "args": config.redundancy_args, "file_f": self.pipeline.file_f} if config.redundancy else None,
        "compression": self.compressor.get_config() if self.compressor is not None else None,
        **(self.party_job or {})},
        files_per_worker=self.pipeline.files_per_worker if config.redundancy else 1,
        udp_config=self._udp_config(), codec=self._codec())

  def _codec(self):
    if self.compressor is None:
      return None
    from strategies.cluster import payloads  # pylint: disable=g-import-not-at-top
    return payloads.PayloadCodec(self.compressor)

  def _udp_config(self):
    config = self.config
    if not config.udp_workers:
      return None
    from strategies.cluster import spec, udp  # pylint: disable=g-import-not-at-top
    address = spec.parse_address(config.cluster[config.ps_job][0], f"parameter server task {config.ps_job}:0")
    return udp.UdpConfig(config.udp_workers, address, config.udp_datagram_bytes, config.udp_fill, config.udp_linger)

  def _restore(self, learning_rate: Any) -> None:
    """Sets up the checkpoint and resumes from the latest one in the checkpoint directory, if any."""
    config = self.config
    tracked = dict(model=self.model, optimizer=self.optimizer, step=self.step,
                   pipeline=tf.train.Checkpoint(**self.pipeline.variables()))
    if self.server is not None:
      tracked["asynchronous"] = tf.train.Checkpoint(**self.server.variables())
    if self.global_server is not None:
      tracked["global_server"] = tf.train.Checkpoint(**self.global_server.variables())
      tracked["parties"] = tf.train.Checkpoint(**{
          f"party_{party}_{name}": variable for party, pipeline in enumerate(self.party_pipelines)
          for name, variable in pipeline.variables().items()})
    latest = tf.train.latest_checkpoint(config.checkpoint_dir) if config.checkpoint_dir else None
    # The weights the run started from, behind the study's distance from init: kept in the
    # checkpoints while the study is on (or was, in the checkpoint resumed), so that a resumed
    # run still measures from its first step.
    self.initial_weights = None
    resumes_initial_weights = latest is not None and has_initial_weights(latest)
    if config.study_period or resumes_initial_weights:
      self.initial_weights = [tf.Variable(v.value, trainable=False, name=f"initial_{i}")
                              for i, v in enumerate(self.model.trainable_variables)]
      if resumes_initial_weights:
        tracked["initial_weights"] = self.initial_weights
    self.checkpoint = tf.train.Checkpoint(**tracked)
    self.manager = None
    self.resumed_from = None
    if config.checkpoint_dir:
      self.manager = tf.train.CheckpointManager(self.checkpoint, config.checkpoint_dir, max_to_keep=3)
      if latest:
        try:
          self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError) as error:
          earlier = ", ".join(os.path.basename(p) for p in self.manager.checkpoints[:-1]) or "none kept"
          raise ValueError(f"cannot read {latest}, truncated or corrupt ({first_line(error)[:300]}); "
                           f"point the 'checkpoint' file in {config.checkpoint_dir} to an earlier one "
                           f"({earlier}), or pass a new --checkpoint-dir") from error
        except (AssertionError, ValueError) as error:
          raise ValueError(f"cannot resume from {latest}: it was saved by a run with another model, rule or "
                           f"state (e.g. momentum placement, a stateful rule such as centered-clipping); resume "
                           f"with that run's flags or pass a new --checkpoint-dir ({first_line(error)[:600]})"
                           ) from error
        if not callable(learning_rate):
          # A fixed rate is an optimizer variable, hence restored too: the configured rate wins,
          # as a schedule's arguments do (schedules are rebuilt from the flags, not checkpointed).
          self.optimizer.learning_rate = learning_rate
        logging.info("Resumed from %s at step %d", latest, int(self.step.numpy()))
        self.resumed_from = latest
    if self.initial_weights is not None and not resumes_initial_weights:
      if latest:
        logging.warning("%s holds no initial weights (saved without --study-period): the study's "
                        "params/distance-from-init is measured from this resumed step", latest)
      for initial, variable in zip(self.initial_weights, self.model.trainable_variables):
        initial.assign(variable.value)
      self.checkpoint.initial_weights = self.initial_weights

  # The steps.

  def _train_step(self, iterator):
    """The `tf.function` of one training step over the workers: (honest workers' loss, accuracy)."""
    config, model, optimizer, strategy = self.config, self.model, self.optimizer, self.strategy
    n = self.nb_replicas
    honest = self.nb_honest_replicas
    weight_indices = penalised_indices(model)

    def local_loss(logits, labels, params=None):
      penalised = params if params is not None else [model.trainable_variables[i].value for i in weight_indices]
      return penalised_loss(logits, labels, penalised, config.l1_regularize, config.l2_regularize)

    def replica_step(x, y):
      if config.nesterov:
        return replica_nesterov_step(x, y)
      with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = local_loss(logits, y)
        # Scaled by 1/n like Keras, so that the plain SUM reduction would be the mean gradient.
        scaled = loss / n
      gradients = tape.gradient(scaled, model.trainable_variables)
      optimizer.apply_gradients(zip(gradients, model.trainable_variables))
      return loss, accuracy_of(logits, y)

    def gradient_at(params, x, y, scale=1.0):
      """(loss, logits, gradient of scale * loss) at `params`, a functional copy of the trainable weights."""
      with tf.GradientTape() as tape:
        tape.watch(params)
        logits, _ = model.stateless_call(params, [v.value for v in model.non_trainable_variables], x, training=True)
        loss = local_loss(logits, y, [params[i] for i in weight_indices])
        scaled = loss * scale
      return loss, logits, tape.gradient(scaled, params)

    def replica_nesterov_step(x, y):
      # Nesterov: the gradient at the weights moved ahead by -lr * momentum * m (m this worker's momentum, or
      # the update's), computed on a functional copy so that the model's weights stay as they are.
      worker = tf.distribute.get_replica_context().replica_id_in_sync_group
      shift = tf.cast(optimizer.learning_rate, tf.float32) * config.momentum * self.pipeline.lookahead(worker)
      params = [v.value - tf.reshape(part, v.shape)
                for v, part in zip(model.trainable_variables, tf.split(shift, self.variable_sizes))]
      # Scaled by 1/n like replica_step's.
      loss, logits, gradients = gradient_at(params, x, y, scale=1.0 / n)
      optimizer.apply_gradients(zip(gradients, model.trainable_variables))
      return loss, accuracy_of(logits, y)

    def replica_local_steps(*batches):
      # FedAvg-style: K local SGD steps on a functional copy of the weights, then the
      # model delta divided by the learning rate is sent as the worker's "gradient".
      learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
      start = [v.value for v in model.trainable_variables]
      params = list(start)
      losses, accuracies = [], []
      for x, y in batches:
        loss, logits, gradients = gradient_at(params, x, y)
        params = [p - learning_rate * g for p, g in zip(params, gradients)]
        losses.append(loss)
        accuracies.append(accuracy_of(logits, y))
      deltas = [(p0 - p) / (learning_rate * n) for p0, p in zip(start, params)]
      optimizer.apply_gradients(zip(deltas, model.trainable_variables))
      return tf.add_n(losses) / len(losses), tf.add_n(accuracies) / len(accuracies)

    @tf.function
    def train_step():
      if config.local_steps == 1:
        losses, accuracies = strategy.run(replica_step, args=next(iterator))
      else:
        batches = [next(iterator) for _ in range(config.local_steps)]
        losses, accuracies = strategy.run(replica_local_steps, args=batches)
      self.step.assign_add(1)
      # Honest workers' loss and accuracy: the Byzantine ones' are not the model's.
      local_losses = strategy.experimental_local_results(losses)[:honest]
      local_accuracies = strategy.experimental_local_results(accuracies)[:honest]
      return tf.add_n(local_losses) / honest, tf.add_n(local_accuracies) / honest

    return train_step

  def _cluster_step(self):
    """One step on the worker processes: the weights out, n rows back (or those in by the deadline), the rule."""
    from strategies.cluster import quorum  # pylint: disable=g-import-not-at-top
    config, model, optimizer, pipeline, pool = self.config, self.model, self.optimizer, self.pipeline, self.pool
    variables = model.trainable_variables
    sizes = self.variable_sizes
    # The workers whose loss is the model's: all but the Byzantine ones (a redundancy defence's study set).
    byzantine = (set(pipeline.byzantine_workers or ()) if config.redundancy
                 else set(range(config.nb_workers - config.nb_real_byz_workers, config.nb_workers)))
    honest = [i for i in range(config.nb_workers) if i not in byzantine]
    first = [True]

    @tf.function
    def apply(rows, present):
      aggregated = pipeline(rows, present)
      gradients = [tf.reshape(part, v.shape) for part, v in zip(tf.split(aggregated, sizes), variables)]
      optimizer.apply_gradients(zip(gradients, variables))
      self.step.assign_add(1)

    def train_step():
      step = int(self.step.numpy())
      weights = np.concatenate([np.reshape(v.numpy(), [-1]) for v in variables])
      gathered = pool.compute(step, weights, config.start_timeout if first[0] else None)
      first[0] = False
      missing = gathered.missing
      if config.redundancy:
        quorum.require_files(missing, pipeline.files_lost(gathered.present), step, pool.describe, pipeline.rule,
                             config.aggregator, pipeline.placement.nb_files, pipeline.file_f, config.aggregator_args)
      else:
        quorum.require(missing, self.tolerated_missing, step, pool.describe, config.aggregator, config.nb_workers,
                       config.nb_decl_byz_workers)
      present = tuple(bool(here) for here in gathered.present)
      apply(tf.constant(gathered.rows), present if missing else None)
      answered = [i for i in honest if gathered.present[i]]
      return (float(np.mean(gathered.losses[answered])) if answered else math.nan,
              float(np.mean(gathered.accuracies[answered])) if answered else math.nan)

    return train_step

  def _asynchronous_updates(self):
    """(the weights as one (d,) tensor, the `tf.function` that applies worker w's row as AdaComp's server does)."""
    optimizer, server, sizes = self.optimizer, self.server, self.variable_sizes
    variables = self.model.trainable_variables

    def flat_weights():
      return tf.concat([tf.reshape(v.value, [-1]) for v in variables], axis=0)

    @tf.function
    def apply(worker, row):
      step = server.receive(worker, row, flat_weights())
      optimizer.apply_gradients(zip([tf.reshape(part, v.shape) for part, v in zip(tf.split(step, sizes), variables)],
                                    variables))
      server.fetch(worker, flat_weights())
      self.step.assign_add(1)

    return flat_weights, apply

  def _flat_gradient(self, weights: tf.Tensor, x: tf.Tensor, y: tf.Tensor):
    """(the (d,) gradient row, loss, accuracy) of the model at the flat `weights` (d,) on one batch, unclipped."""
    config, model = self.config, self.model
    variables = model.trainable_variables
    params = [tf.reshape(part, v.shape) for part, v in zip(tf.split(weights, self.variable_sizes), variables)]
    with tf.GradientTape() as tape:
      tape.watch(params)
      logits, _ = model.stateless_call(params, [v.value for v in model.non_trainable_variables], x, training=True)
      loss = penalised_loss(logits, y, [params[i] for i in penalised_indices(model)], config.l1_regularize,
                            config.l2_regularize)
    row = tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, params)], axis=0)
    return row, loss, accuracy_of(logits, y)

  def _asynchronous_step(self):
    """One arrival at AdaComp's asynchronous server: the next worker's gradient on the weights it fetched."""
    config, server = self.config, self.server
    n = config.nb_workers
    # Each worker's own slices of the global batches, past those it already computed (a resumed run).
    streams = [iter(self.experiment.worker_dataset(n, i, seed=config.seed).skip(int(server.computed[i].numpy())))
               for i in range(n)]

    flat_weights, apply = self._asynchronous_updates()

    @tf.function
    def gradient(weights, x, y):
      row, loss, accuracy = self._flat_gradient(weights, x, y)
      if config.gradient_clip is not None:
        row = row * tf.minimum(1.0, config.gradient_clip / tf.maximum(tf.norm(row), 1e-30))
      return row, loss, accuracy

    server.start(flat_weights())

    def train_step():
      worker = int(server.next_worker().numpy())
      x, y = next(streams[worker])
      row, loss, accuracy = gradient(server.fetched[worker], x, y)
      apply(tf.constant(worker, tf.int32), row)
      return float(loss), float(accuracy)

    return train_step

  def _asynchronous_parties_step(self):
    """One arrival at HiPS's asynchronous global PS: the next party's aggregate, on the weights it fetched.

    The party's workers each take `local_steps` SGD steps from those weights on their own slices of the global
    batches (as in synchronous mode) and send their rows; the party's PS aggregates them (its attack, clipping
    and local rule), and the global PS applies the push alone (ASGD or DC-ASGD, see strategies.global_updates).
    """
    from strategies import hierarchy  # pylint: disable=g-import-not-at-top
    config, optimizer, server = self.config, self.optimizer, self.global_server
    variables, sizes = self.model.trainable_variables, self.variable_sizes
    n, local_steps = config.nb_workers, config.local_steps
    bounds = hierarchy.party_bounds(n, config.parties)
    flipped = range(n - config.nb_real_byz_workers, n) if config.label_flip else ()
    # Each worker's batches, past those its party's rounds already took (a resumed run).
    streams = []
    for party, (start, stop) in enumerate(bounds):
      taken = int(server.computed[party].numpy()) * local_steps
      streams.extend(iter(self.experiment.worker_dataset(n, worker, flipped, seed=config.seed).skip(taken))
                     for worker in range(start, stop))

    def flat_weights():
      return tf.concat([tf.reshape(v.value, [-1]) for v in variables], axis=0)

    def party_round(party: int, batches):
      """(the honest workers' mean loss, accuracy) of `party`'s round, its push applied."""
      fetched = server.fetched[party]
      learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
      rows, losses, accuracies = [], [], []
      for worker_batches in batches:
        params = fetched
        for x, y in worker_batches:
          row, loss, accuracy = self._flat_gradient(params, x, y)
          params = params - learning_rate * row
          losses.append(loss)
          accuracies.append(accuracy)
        # K local steps: the model's change over the rate, as synchronous mode's rows.
        rows.append(row if local_steps == 1 else (fetched - params) / learning_rate)
      pipeline = self.party_pipelines[party]
      push = pipeline(tf.stack(rows))
      step = server.receive(tf.constant(party, tf.int32), push, flat_weights())
      optimizer.apply_gradients(zip([tf.reshape(part, v.shape) for part, v in zip(tf.split(step, sizes), variables)],
                                    variables))
      server.fetch(tf.constant(party, tf.int32), flat_weights())
      self.step.assign_add(1)
      honest = pipeline.nb_honest * local_steps
      return tf.add_n(losses[:honest]) / honest, tf.add_n(accuracies[:honest]) / honest

    # One function a party: its workers and local steps unrolled in its graph.
    rounds = [tf.function(lambda batches, party=party: party_round(party, batches)) for party in range(len(bounds))]
    server.start(flat_weights())

    def train_step():
      party = int(server.next_sender().numpy())
      start, stop = bounds[party]
      batches = [[next(streams[worker]) for _ in range(local_steps)] for worker in range(start, stop)]
      return rounds[party](batches)

    return train_step

  def _cluster_asynchronous_step(self):
    """AdaComp's server on worker processes: the first row in, on the weights that worker fetched, is applied alone.

    Each worker computes on its own slices of the global batches, in order (its batch count is the wire's step),
    on the weights it fetched; a failed, late or refused one fetches the current weights and computes again. A run
    stops if no usable row comes for `start_timeout`, as a synchronous one without its quorum.
    """
    config, server, pool = self.config, self.server, self.pool
    flat_weights, apply = self._asynchronous_updates()

    def submit(worker: int, timeout: float | None = None) -> None:
      pool.submit(worker, int(server.computed[worker].numpy()), server.fetched[worker].numpy(), timeout)

    server.start(flat_weights())
    for worker in range(config.nb_workers):
      submit(worker, config.start_timeout)
    rejoining: set[int] = set()

    def train_step():
      waited_since = time.monotonic()
      while True:
        for worker in [w for w in rejoining if not pool.rejoining(w)]:
          rejoining.discard(worker)
          submit(worker)
        worker, taken = pool.next_answer(config.start_timeout + 1.0)
        if taken is not None:
          break
        if time.monotonic() - waited_since > config.start_timeout:
          raise ClusterError(f"step {int(self.step.numpy())}: no worker gave a usable row in "
                             f"{config.start_timeout:g} s; training stops here (restart the workers, then rerun to "
                             "resume from the checkpoint)")
        # Failed, late or refused: it fetches the current weights and computes its next batch.
        server.fetch(tf.constant(worker, tf.int32), flat_weights())
        if pool.rejoining(worker):
          rejoining.add(worker)
        else:
          submit(worker)
      row, loss, accuracy = taken
      apply(tf.constant(worker, tf.int32), tf.constant(row))
      submit(worker)
      return loss, accuracy

    return train_step

  def _with_deadline(self, train_step):
    """The in-graph step, under a deadline (TensorFlow's remote calls have none) and with a lost worker said plainly."""
    from strategies.cluster import in_graph  # pylint: disable=g-import-not-at-top
    config = self.config
    first = [True]

    def step():
      at = int(self.step.numpy()) + 1
      timeout = config.start_timeout if first[0] else config.step_timeout
      first[0] = False
      with in_graph.Deadline(timeout, lambda: f"step {at} got no gradients from the workers at "
                                              f"{', '.join(config.workers)}",
                             # The blocked step has not updated the variables: they hold the previous step's state.
                             on_expire=lambda: in_graph.save_then_exit(self.manager, int(self.step.numpy()))):
        try:
          loss, accuracy = train_step()
          return float(loss), float(accuracy)
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError) as error:
          named = [address for address in config.workers if address in str(error)]
          lost = f"the worker at {', '.join(named)}" if named else "a worker"
          raise ClusterError(f"step {at}: {lost} was lost ({first_line(error)[:300]}); the in-graph transport "
                             "runs each step on every worker, so training stops here (restart the worker, then "
                             "rerun to resume from the checkpoint)") from error

    return step

  def _evaluation_step(self):
    return evaluation_step(self.model)

  def evaluate(self) -> dict[str, float]:
    """Test accuracy and mean loss of the model now, over the whole test set."""
    return evaluate(self._eval_batch, self._test_dataset)

  # The loop.

  def run(self) -> int:
    """Trains `max_steps` more steps (or until stopped); returns the exit status.

    0 when done, 130 after Ctrl-C, 143 after SIGTERM, 3 when too few cluster workers answer.
    """
    config = self.config
    n = self.nb_replicas
    start_step = int(self.step.numpy())
    end_step = start_step + config.max_steps if config.max_steps > 0 else math.inf
    if self.pool is not None and self.server is not None:
      train_step = self._cluster_asynchronous_step()
    elif self.global_server is not None:
      train_step = self._asynchronous_parties_step()
    elif self.pool is not None:
      train_step = self._cluster_step()
    elif self.server is not None:
      train_step = self._asynchronous_step()
    else:
      flipped = range(n - config.nb_real_byz_workers, n) if config.label_flip else ()
      # The seed also draws the workers' shares of the data: a resumed run keeps it, and skips the
      # batches already trained on, so that it sees the same split and batches as an uninterrupted one.
      dataset = self.experiment.train_dataset(n, flipped_workers=flipped, seed=config.seed)
      dataset = dataset.skip(start_step * config.local_steps)
      # Kept on the object: its teardown (tf.data's per-device threads) then happens with the object's, which
      # runner.py's command line skips (see there).
      self.train_input = iter(self.strategy.experimental_distribute_dataset(dataset))
      train_step = self._train_step(self.train_input)
      if self.in_graph:
        train_step = self._with_deadline(train_step)

    evaluation_file = None
    if config.evaluation_file:
      os.makedirs(os.path.dirname(os.path.abspath(config.evaluation_file)), exist_ok=True)
      if self.resumed_from:
        trim_evaluations(config.evaluation_file, start_step)
      evaluation_file = open(config.evaluation_file, "a", buffering=1, encoding="utf-8")
    summary_writer = tf.summary.create_file_writer(config.summary_dir) if config.summary_dir else None
    if config.checkpoint_dir or summary_writer is not None:
      run_record = provenance.record(config, start_step)
      # What study.py needs beside the configuration: the rule's bound on the honest variance-to-norm ratio.
      # (With redundancy the rule runs across the voted files, not the workers: no bound on the workers' ratio.)
      bound = None if config.redundancy or config.asynchronous else self.pipeline.rule.upper_bound(
          config.nb_workers, config.nb_decl_byz_workers, self.dimension)
      run_record["details"] = {"nb_parameters": self.dimension, "rule_bound": bound}
      if config.checkpoint_dir:
        os.makedirs(config.checkpoint_dir, exist_ok=True)
        provenance.append(config.checkpoint_dir, run_record)
      if summary_writer is not None:
        with summary_writer.as_default(step=start_step):
          tf.summary.text("run/provenance", provenance.as_markdown(run_record))
    study_writer = None
    if config.study_period:
      udp = self.pool.udp if self.pool is not None else None
      study_writer = StudyWriter(self.pipeline.study, config.study_file, summary_writer,
                                 [v.value for v in self.model.trainable_variables], self.initial_weights,
                                 extras=udp.stats if udp is not None else None)

    def record_evaluation(at_step: int) -> None:
      results = self.evaluate()
      line = evaluation_line(at_step, results)
      if evaluation_file is not None:
        evaluation_file.write(line + "\n")
        os.fsync(evaluation_file.fileno())  # kept through a power loss too, as the checkpoints are
      if summary_writer is not None:
        with summary_writer.as_default(step=at_step):
          for key, value in results.items():
            tf.summary.scalar(f"evaluation/{key}", value)
      logging.info("Evaluation at step %d: %s", at_step, ", ".join(f"{k} {v:.4f}" for k, v in results.items()))

    def save(at_step: int) -> str | None:
      """Saves the checkpoint of `at_step` unless it is the latest already; returns its path."""
      if self.manager is None:
        return None
      latest = self.manager.latest_checkpoint
      if latest is not None and latest.endswith(f"-{at_step}"):
        return latest
      path = self.manager.save(checkpoint_number=at_step)
      logging.info("Checkpoint saved to %s", path)
      return path

    checkpoint_trigger = Trigger(config.checkpoint_delta, config.checkpoint_period)
    summary_trigger = Trigger(config.summary_delta, config.summary_period)
    evaluation_trigger = Trigger(config.evaluation_delta, config.evaluation_period)
    log_trigger = Trigger(-1, config.log_period)
    goal = "no limit" if math.isinf(end_step) else str(end_step)
    current = start_step
    stopping: list[str] = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    started = warm = time.monotonic()
    window_start, window_steps = started, 0
    trained_steps = 0
    status = 0
    profiling = False
    failure: BaseException | None = None
    try:
      while current < end_step and not stopping:
        if config.trace and summary_writer is not None and current == start_step + 5:
          tf.profiler.experimental.start(config.summary_dir)
          profiling = True
        step_started = time.monotonic()
        loss, accuracy = train_step()
        loss, accuracy = float(loss), float(accuracy)
        current += 1
        trained_steps += 1
        window_steps += 1
        if trained_steps == WARMUP_STEPS:
          warm = time.monotonic()
        if config.trace:
          logging.info("step %d: %.1f ms, loss %.4f", current, 1e3 * (time.monotonic() - step_started), loss)
          if profiling and current == start_step + 10:
            tf.profiler.experimental.stop()
            profiling = False
        if not math.isfinite(loss):
          logging.warning("Step %d: the honest workers' loss is %s", current, loss)
        if study_writer is not None:
          study_writer.write_if_recorded(loss)
        if summary_writer is not None and summary_trigger(current):
          with summary_writer.as_default(step=current):
            tf.summary.scalar("train/loss", loss)
            tf.summary.scalar("train/accuracy", accuracy)
            tf.summary.scalar("train/learning-rate", current_learning_rate(self.optimizer))
            tf.summary.scalar("train/steps-per-second", trained_steps / max(time.monotonic() - started, 1e-9))
            if config.redundancy:
              tf.summary.scalar("redundancy/distorted-files", int(self.pipeline.distorted_files.numpy()))
            if self.server is not None:
              tf.summary.scalar("asynchronous/delay", int(self.server.last_delay.numpy()),
                                description="Updates applied between the last worker's fetch and its gradient")
            if self.global_server is not None:
              tf.summary.scalar("hierarchy/staleness", int(self.global_server.last_delay.numpy()),
                                description="Global updates applied between the last party's fetch and its push")
              tf.summary.scalar("hierarchy/mean-staleness", self.global_server.mean_staleness(),
                                description="The parties' pushes' mean staleness, to this step")
            tf.summary.scalar("train/bytes-sent", current * self.sent_bytes_per_step,
                              description="What the workers sent in all, to this step: their rows, or with "
                                          "--compression their payloads")
            for variable in self.model.trainable_variables:
              tf.summary.histogram(f"weights/{variable.path}", variable.value)
            if self.pool is not None and self.pool.udp is not None:
              udp = self.pool.udp
              for name, value in udp.stats().items():
                tf.summary.scalar(name, value)
              for reason, count in udp.dropped.items():
                tf.summary.scalar(f"udp/dropped/{reason}", count,
                                  description="Datagrams refused for this reason, to this step")
        if evaluation_trigger(current) and current < end_step:
          record_evaluation(current)
        if checkpoint_trigger(current):
          save(current)
        if log_trigger(current):
          now = time.monotonic()
          logging.info("step %d/%s  %.2f steps/s  loss %.4f  accuracy %.4f", current, goal,
                       window_steps / max(now - window_start, 1e-9), loss, accuracy)
          window_start, window_steps = now, 0
    except KeyboardInterrupt:
      stopping.append("interrupt")
      status = 130
    except ClusterError as error:
      # Not a bug: too few workers answer for the rule to hold. Said plainly, without a traceback.
      logging.error("%s", error)
      stopping.append("the cluster")
      status = 3
    except BaseException as error:
      failure = error
      raise
    finally:
      signal.signal(signal.SIGTERM, previous_handler)
      if profiling:
        # The run ended before step start+10: write the trace of the steps it profiled.
        tf.profiler.experimental.stop()
      elapsed = time.monotonic() - started
      if self.in_graph and status == 3:
        # A lost worker keeps TensorFlow's context from ever syncing again: the outputs are closed, the
        # checkpoint saved, and the process ends.
        for writer in (evaluation_file, study_writer, summary_writer):
          if writer is not None:
            writer.close()
        from strategies.cluster import in_graph  # pylint: disable=g-import-not-at-top
        in_graph.save_then_exit(self.manager, current)
      if failure is not None:
        self._report_failure(failure, current, save)
      else:
        save(current)
        if stopping:
          logging.warning("Stopped by %s at step %d; the last checkpoint holds it", stopping[0], current)
          status = status or 143
        elif not config.no_wait and trained_steps:
          record_evaluation(current)
      for writer in (evaluation_file, study_writer, summary_writer, self.pool):
        if writer is not None:
          writer.close()
      if trained_steps:
        steady = ""
        if trained_steps >= 2 * WARMUP_STEPS:
          # Without the first steps, which trace the step function and, on a cluster, wait for the workers to build.
          steady = (f" ({(trained_steps - WARMUP_STEPS) / (started + elapsed - warm):.2f} steps/s after the first "
                    f"{WARMUP_STEPS})")
        print(f"Trained {trained_steps} steps in {elapsed:.1f} s: {trained_steps / elapsed:.2f} steps/s{steady}",
              flush=True)
        ratio = (f"compressed gradients ({self.float_bytes_per_step / self.sent_bytes_per_step:.1f}x less than "
                 "float32 rows)" if config.compression else "gradients (float32 rows)")
        print(f"Sent {trained_steps * self.sent_bytes_per_step / 1e6:.3f} MB of {ratio}", flush=True)
        if config.parties:
          float_bytes = 4 * self.dimension * (1 if config.asynchronous else config.parties)
          print(f"Parties pushed {trained_steps * self.party_bytes_per_step / 1e6:.3f} MB to the global PS "
                f"({float_bytes / self.party_bytes_per_step:.1f}x less than float32 rows)", flush=True)
        if self.global_server is not None:
          server = self.global_server
          print(f"Staleness of the parties' pushes ({config.global_update}): mean "
                f"{server.mean_staleness():.2f}, max {int(server.staleness_max.numpy())} global updates, over "
                f"{int(server.iteration.numpy())} pushes", flush=True)
    return status

  def _report_failure(self, error: BaseException, at_step: int, save) -> None:
    """Saves what the failed run reached and says where it is, before the traceback is shown."""
    try:
      path = save(at_step)
    except Exception as save_error:  # pylint: disable=broad-except
      logging.error("Training failed at step %d with %s, and saving its checkpoint failed too (%s); the "
                    "traceback follows", at_step, type(error).__name__, first_line(save_error))
      return
    where = (f"its checkpoint is {path}: rerun with the same --checkpoint-dir to resume from it" if path else
             "nothing was saved (no --checkpoint-dir)")
    logging.error("Training failed at step %d with %s; %s. The traceback follows.", at_step, type(error).__name__,
                  where)
