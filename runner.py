#!/usr/bin/env python3
"""Trains an experiment with a robust gradient aggregation rule, some workers being Byzantine.

AggregaThor's command line, on one machine: one replica per worker on this
machine's logical devices, a trusted parameter server that aggregates the
workers' gradients with `--aggregator`, and `--nb-real-byz-workers` Byzantine
workers that run `--attack` (or train on flipped labels with `--label-flip`).

  python runner.py --experiment mnist --experiment-args idx-dir:../shared/data/mnist \
      --aggregator krum --nb-workers 11 --nb-decl-byz-workers 2 --nb-real-byz-workers 2 \
      --attack little --max-steps 1000 --evaluation-file eval.tsv --summary-dir runs/krum

Arguments given as `key:value` are typed by their defaults; an unknown key or a
value of the wrong type is an error that says what is expected. `-delta`
options count steps and `-period` options count seconds; a negative value
disables either trigger.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import re
import signal
import sys
import time
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=g-import-not-at-top

OPTIMIZERS = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion",
}
# Learning-rate schedules: name -> (arguments with defaults, builder).
SCHEDULES: dict[str, tuple[dict[str, Any], Callable[..., Any]]] = {}


def _schedule(name: str, **params: Any):
  def decorate(builder):
    SCHEDULES[name] = (params, builder)
    return builder
  return decorate


@_schedule("fixed", **{"initial-rate": 0.05})
def _fixed(args):
  return args["initial-rate"]


@_schedule("polynomial", **{"initial-rate": 0.05, "decay-steps": 1000, "end-rate": 0.0001, "power": 1.0,
                            "cycle": False})
def _polynomial(args):
  import keras  # pylint: disable=g-import-not-at-top
  return keras.optimizers.schedules.PolynomialDecay(args["initial-rate"], args["decay-steps"], args["end-rate"],
                                                    args["power"], args["cycle"])


@_schedule("exponential", **{"initial-rate": 0.05, "decay-steps": 1000, "decay-rate": 0.96, "staircase": False})
def _exponential(args):
  import keras  # pylint: disable=g-import-not-at-top
  return keras.optimizers.schedules.ExponentialDecay(args["initial-rate"], args["decay-steps"], args["decay-rate"],
                                                     args["staircase"])


@_schedule("inverse-time", **{"initial-rate": 0.05, "decay-steps": 1000, "decay-rate": 0.5, "staircase": False})
def _inverse_time(args):
  import keras  # pylint: disable=g-import-not-at-top
  return keras.optimizers.schedules.InverseTimeDecay(args["initial-rate"], args["decay-steps"], args["decay-rate"],
                                                     args["staircase"])


@_schedule("cosine", **{"initial-rate": 0.05, "decay-steps": 1000, "alpha": 0.0})
def _cosine(args):
  import keras  # pylint: disable=g-import-not-at-top
  return keras.optimizers.schedules.CosineDecay(args["initial-rate"], args["decay-steps"], args["alpha"])


class UsageError(ValueError):
  """A bad command line: reported as `runner.py: error: ...`, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  pairs = dict(nargs="*", default=[], metavar="KEY:VALUE")
  group = parser.add_argument_group("experiment")
  group.add_argument("--experiment", default="digits", help="model + dataset pair (see experiments.names())")
  group.add_argument("--experiment-args", **pairs, help="e.g. idx-dir:../shared/data/mnist model:lenet batch-size:32 "
                     "alpha:0.5 (non-iid Dirichlet split)")
  group.add_argument("--seed", type=int, default=0, help="seed of the data split, shuffling and model initialisation")
  group = parser.add_argument_group("aggregation and attack")
  group.add_argument("--aggregator", default="average", help="rule, optionally after pre-aggregations: nnm>krum")
  group.add_argument("--aggregator-args", **pairs)
  group.add_argument("--nb-workers", type=int, default=1)
  group.add_argument("--nb-decl-byz-workers", type=int, default=0, help="f, the Byzantine workers the rule tolerates")
  group.add_argument("--nb-real-byz-workers", type=int, default=0, help="the last that many workers are Byzantine")
  group.add_argument("--attack", default=None, help="what the Byzantine workers send (see aggregathor.attacks)")
  group.add_argument("--attack-args", **pairs)
  group.add_argument("--label-flip", action="store_true",
                     help="data attack: the Byzantine workers train on flipped labels (instead of --attack)")
  group = parser.add_argument_group("optimisation")
  group.add_argument("--optimizer", default="sgd", choices=sorted(OPTIMIZERS))
  group.add_argument("--optimizer-args", **pairs, help="keyword arguments of the Keras optimizer, dashed")
  group.add_argument("--learning-rate", default="fixed", choices=sorted(SCHEDULES))
  group.add_argument("--learning-rate-args", **pairs, help="e.g. initial-rate:0.1 decay-steps:1000")
  group.add_argument("--l1-regularize", type=float, default=0.0, help="L1 penalty on the trainable weights")
  group.add_argument("--l2-regularize", type=float, default=0.0, help="L2 penalty on the trainable weights")
  group.add_argument("--momentum", type=float, default=0.0, help="momentum of the robust pipeline")
  group.add_argument("--momentum-at", default="update", choices=["update", "worker", "server"],
                     help="at the update (server side), at each worker, or at the server per worker")
  group.add_argument("--dampening", type=float, default=0.0)
  group.add_argument("--gradient-clip", type=float, default=None, help="L2 norm the honest gradients are clipped at")
  group.add_argument("--local-steps", type=int, default=1,
                     help="local SGD steps between communications; >1 sends model deltas (FedAvg-style)")
  group.add_argument("--max-steps", type=int, default=1000)
  group = parser.add_argument_group("outputs")
  group.add_argument("--checkpoint-dir", default=None)
  group.add_argument("--checkpoint-delta", type=int, default=-1)
  group.add_argument("--checkpoint-period", type=float, default=600)
  group.add_argument("--summary-dir", default=None, help="TensorBoard log directory")
  group.add_argument("--summary-delta", type=int, default=-1)
  group.add_argument("--summary-period", type=float, default=30)
  group.add_argument("--evaluation-file", default=None, help="one line per evaluation: walltime, step, name:value...")
  group.add_argument("--evaluation-delta", type=int, default=-1)
  group.add_argument("--evaluation-period", type=float, default=60)
  group.add_argument("--study-period", type=int, default=0,
                     help="record the per-step study metrics every that many steps (0: off)")
  group.add_argument("--study-file", default=None, help="CSV of the study metrics (header line starts with #)")
  group.add_argument("--log-period", type=float, default=10, help="seconds between progress lines")
  group = parser.add_argument_group("devices and process")
  group.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
  group.add_argument("--reuse-gpu", action="store_true", help="let several workers share a GPU")
  group.add_argument("--no-wait", action="store_true",
                     help="exit as soon as --max-steps is reached, without the final evaluation")
  group.add_argument("--trace", action="store_true",
                     help="log every step's timing; with --summary-dir, also a profiler trace of steps 5-9")
  group.add_argument("--stdout-to", default=None, help="append standard output to this file")
  group.add_argument("--stderr-to", default=None, help="append standard error to this file")
  return parser


def check_flags(flags: argparse.Namespace) -> None:
  """Checks what argparse cannot, before TensorFlow starts."""
  for name in ("nb_workers", "max_steps", "local_steps"):
    if getattr(flags, name) < 1:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(flags, name)}")
  for name in ("nb_decl_byz_workers", "nb_real_byz_workers", "study_period"):
    if getattr(flags, name) < 0:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(flags, name)}")
  if flags.nb_real_byz_workers >= flags.nb_workers:
    raise UsageError(f"--nb-real-byz-workers ({flags.nb_real_byz_workers}) must leave at least one honest worker "
                     f"out of --nb-workers ({flags.nb_workers})")
  if flags.attack and flags.label_flip:
    raise UsageError("--label-flip makes the Byzantine workers send the gradients of flipped labels; it cannot be "
                     "combined with --attack, which replaces those gradients")
  if (flags.attack or flags.label_flip) and flags.nb_real_byz_workers == 0:
    raise UsageError("--attack/--label-flip need --nb-real-byz-workers >= 1 Byzantine workers")
  if flags.attack_args and not flags.attack:
    raise UsageError("--attack-args given without --attack")
  for name in ("l1_regularize", "l2_regularize"):
    if not getattr(flags, name) >= 0:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(flags, name)}")
  if flags.study_file and flags.study_period == 0:
    raise UsageError("--study-file needs --study-period > 0")
  if flags.reuse_gpu and not flags.use_gpu:
    raise UsageError("--reuse-gpu needs --use-gpu")


def typed_args(params: Mapping[str, Any], pairs: Sequence[str], what: str) -> dict[str, Any]:
  """`key:value` pairs typed by `params`' defaults; keys whose default is None are read as literals."""
  import experiments  # pylint: disable=g-import-not-at-top
  raw = experiments.split_pairs(pairs, what)
  types = {key: _literal_type(value) for key, value in raw.items() if params.get(key, 0) is None}
  return experiments.parse_args(params, raw, types, what)


def _literal_type(text: str) -> type:
  if re.fullmatch(r"[+-]?\d+", text.strip()):
    return int
  try:
    float(text)
    return float
  except ValueError:
    return bool if text.strip().lower() in ("true", "false") else str


def rule_params(rule) -> dict[str, Any]:
  """A rule's argument table, with a chain's stage arguments also under their plain names."""
  table = dict(rule.params)
  for stage in getattr(rule, "stages", ()):
    for key, value in stage.params.items():
      table.setdefault(key, value)
  return table


def optimizer_params(name: str) -> dict[str, Any]:
  import keras  # pylint: disable=g-import-not-at-top
  signature = inspect.signature(getattr(keras.optimizers, OPTIMIZERS[name]).__init__)
  return {key.replace("_", "-"): parameter.default for key, parameter in signature.parameters.items()
          if key not in ("self", "learning_rate", "name", "kwargs")
          and parameter.default is not inspect.Parameter.empty}


class Trigger:
  """Fires every `delta` steps and/or every `period` seconds (negative: never)."""

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


def redirect_outputs(stdout_to: str | None, stderr_to: str | None) -> None:
  for path, stream in ((stdout_to, sys.stdout), (stderr_to, sys.stderr)):
    if path:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      handle = open(path, "a", buffering=1, encoding="utf-8")
      os.dup2(handle.fileno(), stream.fileno())


def run(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  flags = parser.parse_args(argv)
  try:
    check_flags(flags)
    redirect_outputs(flags.stdout_to, flags.stderr_to)
    return train(flags)
  except UsageError as error:
    parser.error(str(error))
  except (ValueError, FileNotFoundError) as error:
    # Bad arguments found while building the run (unknown rule, bad key:value, missing dataset...);
    # a missing IDX file or directory is a FileNotFoundError that names the path.
    print(f"runner.py: error: {error}", file=sys.stderr)
    return 2
  return 0


def first_line(error: BaseException) -> str:
  """An exception's first message line (its type's name when it has no message), for a one-line error."""
  message = str(error).strip()
  return message.splitlines()[0] if message else type(error).__name__


def has_initial_weights(checkpoint_path: str) -> bool:
  """Whether a runner checkpoint holds the weights its run started from."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    names = [name for name, _ in tf.train.list_variables(checkpoint_path)]
  except tf.errors.OpError:
    return False  # unreadable: the restore that follows says so
  return any(name.startswith("initial_weights/") for name in names)


def train(flags: argparse.Namespace) -> int:
  import strategies  # pylint: disable=g-import-not-at-top
  strategies.configure_devices(flags.nb_workers, use_gpu=flags.use_gpu, reuse_gpu=flags.reuse_gpu)
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top
  from aggregathor import attacks, gars  # pylint: disable=g-import-not-at-top
  from strategies.summaries import StudyWriter  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO)
  experiment = experiments.get(flags.experiment, **experiments.split_pairs(flags.experiment_args,
                                                                           "--experiment-args"))
  rule = gars.get(flags.aggregator)
  aggregator_args = typed_args(rule_params(rule), flags.aggregator_args, "--aggregator-args")
  attack_args = {}
  if flags.attack:
    attack_args = typed_args(attacks.get(flags.attack).params, flags.attack_args, "--attack-args")
  optimizer_args = {key.replace("-", "_"): value for key, value in
                    typed_args(optimizer_params(flags.optimizer), flags.optimizer_args, "--optimizer-args").items()}
  schedule_params, schedule_builder = SCHEDULES[flags.learning_rate]
  schedule_args = {**schedule_params, **typed_args(schedule_params, flags.learning_rate_args,
                                                   "--learning-rate-args")}
  if not schedule_args["initial-rate"] > 0:
    raise ValueError(f"--learning-rate-args initial-rate must be > 0, got {schedule_args['initial-rate']}")
  keras.utils.set_random_seed(flags.seed)

  strategy = strategies.ByzantineStrategy(
      rule, flags.nb_workers, flags.nb_decl_byz_workers, flags.nb_real_byz_workers, flags.attack,
      aggregator_args, attack_args, momentum=flags.momentum, momentum_at=flags.momentum_at,
      dampening=flags.dampening, clip=flags.gradient_clip, study_period=flags.study_period)
  n = flags.nb_workers
  honest = n - flags.nb_real_byz_workers
  batch_size = experiment.args["batch-size"]
  data = experiment.load()
  logging.info("%s: %d training and %d test examples; %d workers (%d Byzantine, f=%d declared), rule %s%s",
               experiment.name, len(data.y_train), len(data.y_test), n, flags.nb_real_byz_workers,
               flags.nb_decl_byz_workers, rule.name, f", attack {flags.attack}" if flags.attack else "")

  learning_rate = schedule_builder(schedule_args)
  with strategy.scope():
    model = experiment.build_model()
    optimizer = getattr(keras.optimizers, OPTIMIZERS[flags.optimizer])(learning_rate=learning_rate, **optimizer_args)
    optimizer.build(model.trainable_variables)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
  dimension = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  strategy.pipeline.build(dimension, tf.float32)
  tracked = dict(model=model, optimizer=optimizer, step=step,
                 pipeline=tf.train.Checkpoint(**strategy.pipeline.variables()))
  latest = tf.train.latest_checkpoint(flags.checkpoint_dir) if flags.checkpoint_dir else None
  # The weights the run started from, behind the study's distance from init: kept in the
  # checkpoints while the study is on (or was, in the checkpoint resumed), so that a resumed
  # run still measures from its first step.
  initial_weights = None
  resumes_initial_weights = latest is not None and has_initial_weights(latest)
  if flags.study_period or resumes_initial_weights:
    initial_weights = [tf.Variable(v.value, trainable=False, name=f"initial_{i}")
                       for i, v in enumerate(model.trainable_variables)]
    if resumes_initial_weights:
      tracked["initial_weights"] = initial_weights
  checkpoint = tf.train.Checkpoint(**tracked)
  manager = None
  if flags.checkpoint_dir:
    manager = tf.train.CheckpointManager(checkpoint, flags.checkpoint_dir, max_to_keep=3)
    if latest:
      try:
        checkpoint.restore(latest).assert_existing_objects_matched()
      except (tf.errors.OpError, IndexError) as error:
        raise ValueError(f"cannot read {latest}, truncated or corrupt ({first_line(error)[:300]}); "
                         f"point the 'checkpoint' file in {flags.checkpoint_dir} to an earlier one "
                         f"({', '.join(os.path.basename(p) for p in manager.checkpoints[:-1]) or 'none kept'}), "
                         f"or pass a new --checkpoint-dir") from error
      except (AssertionError, ValueError) as error:
        raise ValueError(f"cannot resume from {latest}: it was saved by a run with another "
                         f"model, rule or state (e.g. momentum placement, a stateful rule such as centered-clipping); "
                         f"resume with that run's flags or pass a new --checkpoint-dir ({first_line(error)[:600]})"
                         ) from error
      if not callable(learning_rate):
        # A fixed rate is an optimizer variable, hence restored too: the command line's rate wins,
        # as a schedule's arguments do (schedules are rebuilt from the flags, not checkpointed).
        optimizer.learning_rate = learning_rate
      logging.info("Resumed from %s at step %d", latest, int(step.numpy()))
  if initial_weights is not None and not resumes_initial_weights:
    if latest:
      logging.warning("%s holds no initial weights (saved without --study-period): the study's "
                      "params/distance-from-init is measured from this resumed step", latest)
    for initial, variable in zip(initial_weights, model.trainable_variables):
      initial.assign(variable.value)
    checkpoint.initial_weights = initial_weights
  start_step = int(step.numpy())
  if start_step >= flags.max_steps:
    logging.info("Already at step %d >= --max-steps %d: nothing to train", start_step, flags.max_steps)

  flipped = range(honest, n) if flags.label_flip else ()
  # The seed also draws the workers' shares of the data: a resumed run keeps it, and skips the
  # batches already trained on, so that it sees the same split and batches as an uninterrupted one.
  dataset = experiment.train_dataset(n, flipped_workers=flipped, seed=flags.seed)
  dataset = dataset.skip(start_step * flags.local_steps)
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  # Only the kernels (rank >= 2) are penalised, not the biases.
  weight_indices = [i for i, v in enumerate(model.trainable_variables) if len(v.shape) > 1]

  def local_loss(logits, labels, params=None):
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    penalised = params if params is not None else [model.trainable_variables[i].value for i in weight_indices]
    if flags.l1_regularize:
      loss += flags.l1_regularize * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in penalised])
    if flags.l2_regularize:
      loss += flags.l2_regularize * tf.add_n([tf.reduce_sum(tf.square(w)) for w in penalised])
    return loss

  def replica_step(x, y):
    with tf.GradientTape() as tape:
      logits = model(x, training=True)
      loss = local_loss(logits, y)
      # Scaled by 1/n like Keras, so that the plain SUM reduction would be the mean gradient.
      scaled = loss / n
    gradients = tape.gradient(scaled, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                              tf.cast(y, tf.int32)), tf.float32))
    return loss, correct

  def replica_local_steps(*batches):
    # FedAvg-style: K local SGD steps on a functional copy of the weights, then the
    # model delta divided by the learning rate is sent as the worker's "gradient".
    learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
    start = [v.value for v in model.trainable_variables]
    params = list(start)
    frozen = [v.value for v in model.non_trainable_variables]
    losses, accuracies = [], []
    for x, y in batches:
      with tf.GradientTape() as tape:
        tape.watch(params)
        logits, _ = model.stateless_call(params, frozen, x, training=True)
        loss = local_loss(logits, y, [params[i] for i in weight_indices])
      gradients = tape.gradient(loss, params)
      params = [p - learning_rate * g for p, g in zip(params, gradients)]
      losses.append(loss)
      accuracies.append(tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                                        tf.cast(y, tf.int32)), tf.float32)))
    deltas = [(p0 - p) / (learning_rate * n) for p0, p in zip(start, params)]
    optimizer.apply_gradients(zip(deltas, model.trainable_variables))
    return tf.add_n(losses) / len(losses), tf.add_n(accuracies) / len(accuracies)

  @tf.function
  def train_step():
    if flags.local_steps == 1:
      losses, accuracies = strategy.run(replica_step, args=next(iterator))
    else:
      batches = [next(iterator) for _ in range(flags.local_steps)]
      losses, accuracies = strategy.run(replica_local_steps, args=batches)
    step.assign_add(1)
    # Honest workers' loss and accuracy: the Byzantine ones' are not the model's.
    local_losses = strategy.experimental_local_results(losses)[:honest]
    local_accuracies = strategy.experimental_local_results(accuracies)[:honest]
    return tf.add_n(local_losses) / honest, tf.add_n(local_accuracies) / honest

  test_dataset = experiment.test_dataset()

  @tf.function
  def eval_batch(x, y):
    logits = model(x, training=False)
    loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32)), tf.float64)
    return tf.reduce_sum(tf.cast(loss, tf.float64)), tf.reduce_sum(correct), tf.cast(tf.shape(y)[0], tf.float64)

  def evaluate() -> dict[str, float]:
    total_loss = total_correct = count = 0.0
    for x, y in test_dataset:
      loss, correct, size = eval_batch(x, y)
      total_loss += float(loss)
      total_correct += float(correct)
      count += float(size)
    return {"accuracy": total_correct / count, "loss": total_loss / count}

  evaluation_file = None
  if flags.evaluation_file:
    os.makedirs(os.path.dirname(os.path.abspath(flags.evaluation_file)), exist_ok=True)
    evaluation_file = open(flags.evaluation_file, "a", buffering=1, encoding="utf-8")
  summary_writer = tf.summary.create_file_writer(flags.summary_dir) if flags.summary_dir else None
  study_writer = None
  if flags.study_period:
    study_writer = StudyWriter(strategy.study, flags.study_file, summary_writer,
                               [v.value for v in model.trainable_variables], initial_weights)

  def record_evaluation(at_step: int) -> dict[str, float]:
    results = evaluate()
    line = "\t".join([f"{time.time():.3f}", str(at_step)] + [f"{k}:{v:.6g}" for k, v in results.items()])
    if evaluation_file is not None:
      evaluation_file.write(line + "\n")
    if summary_writer is not None:
      with summary_writer.as_default(step=at_step):
        for key, value in results.items():
          tf.summary.scalar(f"evaluation/{key}", value)
    logging.info("Evaluation at step %d: %s", at_step, ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    return results

  def save(at_step: int) -> None:
    if manager is not None and (manager.latest_checkpoint is None or
                                not manager.latest_checkpoint.endswith(f"-{at_step}")):
      path = manager.save(checkpoint_number=at_step)
      logging.info("Checkpoint saved to %s", path)

  checkpoint_trigger = Trigger(flags.checkpoint_delta, flags.checkpoint_period)
  summary_trigger = Trigger(flags.summary_delta, flags.summary_period)
  evaluation_trigger = Trigger(flags.evaluation_delta, flags.evaluation_period)
  log_trigger = Trigger(-1, flags.log_period)
  current = start_step
  stopping: list[str] = []
  previous_handler = signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
  started = time.monotonic()
  window_start, window_steps = started, 0
  trained_steps = 0
  status = 0
  profiling = False
  try:
    while current < flags.max_steps and not stopping:
      if flags.trace and summary_writer is not None and current == start_step + 5:
        tf.profiler.experimental.start(flags.summary_dir)
        profiling = True
      step_started = time.monotonic()
      loss, accuracy = train_step()
      loss, accuracy = float(loss), float(accuracy)
      current += 1
      trained_steps += 1
      window_steps += 1
      if flags.trace:
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
          tf.summary.scalar("train/learning-rate", float(optimizer.learning_rate))
          tf.summary.scalar("train/steps-per-second", trained_steps / max(time.monotonic() - started, 1e-9))
      if evaluation_trigger(current) and current < flags.max_steps:
        record_evaluation(current)
      if checkpoint_trigger(current):
        save(current)
      if log_trigger(current):
        now = time.monotonic()
        logging.info("step %d/%d  %.2f steps/s  loss %.4f  accuracy %.4f", current, flags.max_steps,
                     window_steps / max(now - window_start, 1e-9), loss, accuracy)
        window_start, window_steps = now, 0
  except KeyboardInterrupt:
    stopping.append("interrupt")
    status = 130
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    if profiling:
      # The run ended before step start+10: write the trace of the steps it profiled.
      tf.profiler.experimental.stop()
    elapsed = time.monotonic() - started
    save(current)
    if stopping:
      logging.warning("Stopped by %s at step %d; the last checkpoint holds it", stopping[0], current)
      status = status or 143
    elif not flags.no_wait and trained_steps:
      record_evaluation(current)
    if evaluation_file is not None:
      evaluation_file.close()
    if study_writer is not None:
      study_writer.close()
    if summary_writer is not None:
      summary_writer.close()
    if trained_steps:
      print(f"Trained {trained_steps} steps in {elapsed:.1f} s: {trained_steps / elapsed:.2f} steps/s", flush=True)
  return status


if __name__ == "__main__":
  sys.exit(run())
