"""A user's own Keras model, trained by `model.fit` with its gradients computed on the cluster's worker processes.

    workers = strategies.cluster.RemoteWorkers("cluster.json", credentials="creds", aggregator="median",
                                               nb_decl_byz_workers=1)
    model = keras.Sequential([...])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=..., metrics=["accuracy"])
    workers.attach(model)      # after compile: fit's steps now run on the workers
    model.fit(x, y, batch_size=128, epochs=3)
    workers.close()

Each step, this process (the trusted parameter server) sends every worker the
weights and its slice of the batch, over the default transport (mutual TLS,
no port here; see `pool`). It gathers their gradient rows by the deadline,
aggregates the rows present with the rule (a first-(n-f) quorum, as
runner.py), and applies the result with the model's own optimizer. The loss and
metrics Keras shows are computed here, on the whole batch with the weights
before the update, as Keras does: nothing a worker says reaches them. Callbacks,
validation and history work as usual.

Over MPI (`mpi=True`), the script runs under `mpirun -np N+1`: rank 0 is this
parameter server, and ranks 1 to N must serve as the workers before anything
else (`strategies.cluster.mpi`):

    from strategies.cluster import mpi
    if mpi.world()[0] != 0:
      sys.exit(mpi.serve())
    workers = strategies.cluster.RemoteWorkers(mpi=True, aggregator="median", nb_decl_byz_workers=1)

Limits: one input and one target tensor; one loss (plus the model's
regularization losses); the model must rebuild from its configuration on the
workers (built-in layers, or custom ones registered in a module they import);
non-trainable state (e.g. BatchNorm statistics) is the parameter server's own,
updated by its forward pass on the batch.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from aggregathor import gars
from strategies.cluster import pool as pool_lib
from strategies.cluster import quorum, spec as spec_lib, wire
from strategies.pipeline import GradientPipeline


class RemoteWorkers:
  """The worker tasks of a deployed cluster, as the gradient source of a Keras model's `fit`.

  cluster: the cluster JSON (text or file) and the workers' job name; the
  workers must be running (`deploy.py --cluster JSON --id workers:I`).
  mpi: instead of a cluster, the ranks 1 to N of this MPI job are the workers
  (see the module's docstring); a collective past its deadline ends the process.
  aggregator, nb_decl_byz_workers, aggregator_args, nb_real_byz_workers,
  momentum, momentum_at, dampening, gradient_clip, study_period: as runner.py's
  flags. step_timeout and start_timeout: each step's deadline, and the first's.
  """

  def __init__(self, cluster: str | None = None, *, mpi: bool = False, aggregator: str | gars.Rule = "average", nb_decl_byz_workers: int = 0,
               aggregator_args: Mapping[str, Any] | None = None, nb_real_byz_workers: int = 0,
               worker_job: str = "workers", credentials: str = "credentials", momentum: float = 0.0,
               momentum_at: str = "update", dampening: float = 0.0, gradient_clip: float | None = None,
               study_period: int = 0, step_timeout: float = 10.0, start_timeout: float = 120.0, seed: int = 0):
    if (cluster is None) == (not mpi):
      raise ValueError("RemoteWorkers takes either a cluster JSON (workers served by deploy.py) or mpi=True (the "
                       "ranks of this MPI job), not both")
    if mpi:
      from strategies.cluster import mpi as mpi_lib  # pylint: disable=g-import-not-at-top
      self.pool = mpi_lib.MpiPool(mpi_lib.world()[1] - 1, step_timeout, start_timeout)
    else:
      addresses = spec_lib.ClusterSpec.parse(cluster).tasks(worker_job, "worker job")
      self.pool = pool_lib.WorkerPool(addresses, credentials, step_timeout, start_timeout)
    self.nb_workers = self.pool.nb_workers
    self.rule = gars.get(aggregator)
    self.name = aggregator if isinstance(aggregator, str) else type(aggregator).__name__
    self.nb_decl_byz_workers = nb_decl_byz_workers
    self.aggregator_args = dict(aggregator_args or {})
    self.tolerated_missing = quorum.tolerated_missing(self.rule, self.name, self.nb_workers, nb_decl_byz_workers,
                                                      self.aggregator_args)
    self.pipeline = GradientPipeline(
        self.rule, self.nb_workers, nb_decl_byz_workers, nb_real_byz_workers, None, self.aggregator_args,
        momentum=0.0 if momentum_at == "worker" else momentum, momentum_at=momentum_at, dampening=dampening,
        study_period=study_period)
    self._job = {"kind": "keras", "seed": seed, "nb_workers": self.nb_workers,
                 "nb_decl_byz_workers": nb_decl_byz_workers, "nb_real_byz_workers": nb_real_byz_workers,
                 "aggregator": self.name, "aggregator_args": self.aggregator_args, "gradient_clip": gradient_clip,
                 "momentum": momentum, "dampening": dampening, "momentum_at": momentum_at}
    self.start_timeout = start_timeout
    self.model: keras.Model | None = None

  def attach(self, model: keras.Model, max_batch_size: int = 4096) -> keras.Model:
    """Makes `model.fit` compute its gradients on the workers; call it after `compile`, before `fit`.

    max_batch_size: the largest batch `fit` will be given (each worker gets a slice of it).
    """
    if getattr(model, "optimizer", None) is None or not model.compiled:
      raise ValueError("attach(model) after model.compile(optimizer=..., loss=...): the model's optimizer applies "
                       "the aggregated gradients and its compiled loss goes to the workers")
    if not model.built:
      raise ValueError("build the model first (give it a keras.Input, or call model.build(input_shape)): its "
                       "configuration and weights go to the workers")
    inputs = model.inputs if hasattr(model, "inputs") and model.inputs else None
    if inputs is not None and len(inputs) != 1:
      raise ValueError(f"the model has {len(inputs)} inputs; attach() takes models with one input tensor")
    loss = model.loss
    if isinstance(loss, (list, tuple, dict)):
      raise ValueError("attach() takes one loss for the model's one output, got several")
    loss = keras.losses.get(loss)
    self.model = model
    self._x_spec = None  # learnt from the first batch, with its y
    self._loss = keras.losses.serialize(loss)
    self._max_batch_size = int(max_batch_size)
    variables = model.trainable_variables
    self.dimension = sum(int(np.prod(v.shape)) for v in variables)
    self._sizes = [int(np.prod(v.shape)) for v in variables]
    model.optimizer.build(variables)
    self.pipeline.build(self.dimension, tf.float32)
    self._first = True
    self._apply = {}
    model.jit_compile = False  # the step calls out of the graph, which XLA cannot compile
    metrics_loss = next((m for m in model.metrics if m.name == "loss"), None)

    def train_step(data):
      x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
      if not isinstance(x, tf.Tensor) or not isinstance(y, tf.Tensor):
        raise ValueError("attach(): fit must give one input tensor and one target tensor per batch")
      # Keras' own loss and metrics, on the whole batch, with the weights before the update, computed here.
      y_pred = model(x, training=True)
      loss_value = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
      if metrics_loss is not None:
        metrics_loss.update_state(loss_value, sample_weight=tf.shape(x)[0])
      with tf.control_dependencies([loss_value]):
        done = tf.py_function(self._step, [x, y], Tout=tf.bool)
      with tf.control_dependencies([done]):
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.train_step = train_step
    model.train_function = None  # rebuilt by the next fit with this step
    return model

  def _configure(self, x: np.ndarray, y: np.ndarray) -> None:
    self._x_spec, self._y_spec = (list(x.shape[1:]), x.dtype.name), (list(y.shape[1:]), y.dtype.name)
    max_examples = -(-self._max_batch_size // self.nb_workers)
    job = {**self._job, "run": os.urandom(8).hex(), "worker": 0, "dimension": self.dimension,
           "model": self.model.to_json(),
           "loss": self._loss, "x_shape": self._x_spec[0], "x_dtype": self._x_spec[1], "y_shape": self._y_spec[0],
           "y_dtype": self._y_spec[1], "max_examples": max_examples}
    example = (np.zeros((max_examples, *x.shape[1:]), x.dtype), np.zeros((max_examples, *y.shape[1:]), y.dtype))
    self.pool.configure(job, len(wire.encode_batch(0, np.zeros(self.dimension, np.float32), *example)))
    logging.info("%d workers took the model (%d parameters); a step goes on without up to %d absent",
                 self.nb_workers, self.dimension, self.tolerated_missing)

  def _step(self, x: tf.Tensor, y: tf.Tensor) -> bool:
    """One step on the workers (outside the graph): the weights and slices out, the rows back, the rule, the update."""
    x, y = x.numpy(), y.numpy()
    if len(x) < self.nb_workers or len(x) > self._max_batch_size:
      raise ValueError(f"a batch of {len(x)} examples for {self.nb_workers} workers: give fit a batch_size from "
                       f"{self.nb_workers} to attach()'s max_batch_size ({self._max_batch_size})")
    if self._x_spec is None:
      self._configure(x, y)
    if (list(x.shape[1:]), x.dtype.name) != self._x_spec or (list(y.shape[1:]), y.dtype.name) != self._y_spec:
      raise ValueError(f"this batch is {x.dtype.name} {list(x.shape[1:])} -> {y.dtype.name} {list(y.shape[1:])}, "
                       f"the first was {self._x_spec[1]} {self._x_spec[0]} -> {self._y_spec[1]} {self._y_spec[0]}: "
                       "call attach() again for other data")
    model = self.model
    step = int(model.optimizer.iterations.numpy())
    weights = np.concatenate([np.reshape(v.numpy(), [-1]) for v in model.trainable_variables])
    parts = np.array_split(np.arange(len(x)), self.nb_workers)
    gathered = self.pool.compute(step, weights, self.start_timeout if self._first else None,
                                 batches=[(x[part], y[part]) for part in parts])
    self._first = False
    quorum.require(gathered.missing, self.tolerated_missing, step, self.pool.describe, self.name, self.nb_workers,
                   self.nb_decl_byz_workers)
    present = tuple(bool(here) for here in gathered.present) if gathered.missing else None
    if present not in self._apply:
      self._apply[present] = tf.function(lambda rows, present=present: self._update(rows, present))
    self._apply[present](tf.constant(gathered.rows))
    return True

  def _update(self, rows: tf.Tensor, present) -> None:
    aggregated = self.pipeline(rows, present)
    variables = self.model.trainable_variables
    gradients = [tf.reshape(part, v.shape) for part, v in zip(tf.split(aggregated, self._sizes), variables)]
    self.model.optimizer.apply_gradients(zip(gradients, variables))

  @property
  def study(self):
    """The study metrics recorder of the rule's inputs and output (`strategies.study.StudyRecorder`)."""
    return self.pipeline.study

  def close(self) -> None:
    """Closes the channels to the workers (the refused rows and failed calls of the run, if any, are logged)."""
    self.pool.close()
