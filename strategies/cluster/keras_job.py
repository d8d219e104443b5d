"""A worker's job for a user's own Keras model (see `keras_fit`): the model's configuration, its loss, and batches.

The model comes as its Keras configuration, JSON data, deserialized in safe
mode (no Lambda layer, no code); custom layers must be registered
(`keras.saving.register_keras_serializable`) in a module this worker process
imports. Each step brings the weights and this worker's slice of the batch,
which the job checks against the shapes and dtypes it announced.

A Byzantine worker (`deploy.py ... --attack NAME`) sees only its own slice: it
cuts it into `nb_workers - nb_real_byz_workers` parts (fewer if the slice is
smaller), stands their gradients for the honest ones, and sends the attack's
vector.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf

from strategies.cluster import real_attack, wire


class KerasJob:
  """The model, loss, momentum and attack of one `keras` job on this worker."""

  def __init__(self, job: Mapping[str, Any], attack: str | None, attack_args: Mapping[str, Any]):
    self.job = dict(job)
    keras.utils.set_random_seed(job["seed"] + job["worker"])
    try:
      self.model = keras.saving.deserialize_keras_object(json.loads(job["model"]), safe_mode=True)
      self.loss = keras.losses.get(keras.saving.deserialize_keras_object(job["loss"], safe_mode=True)
                                   if isinstance(job["loss"], dict) else job["loss"])
    except (TypeError, ValueError, KeyError, AttributeError) as error:
      raise ValueError(f"cannot build the job's model or loss here ({error}); built-in Keras layers and losses "
                       "work everywhere, custom ones must be registered in a module this worker imports") from error
    self.x_spec = (tuple(job["x_shape"]), job["x_dtype"])
    self.y_spec = (tuple(job["y_shape"]), job["y_dtype"])
    for spec in (self.x_spec, self.y_spec):
      if not all(isinstance(size, int) and size >= 0 for size in spec[0]):
        raise ValueError(f"per-example shape {list(spec[0])}: expected non-negative integers")
      wire._dtype(spec[1])  # pylint: disable=protected-access
    self.model.build((None, *self.x_spec[0]))
    self.variables = list(self.model.trainable_variables)
    self.dimension = int(sum(np.prod(v.shape) for v in self.variables))
    if self.dimension != job["dimension"]:
      raise ValueError(f"the job's model has {self.dimension} parameters here, {job['dimension']} on the "
                       "parameter server")
    self.attack = real_attack.RealAttack(job, attack, attack_args) if attack else None
    clip, momentum, dampening = job["gradient_clip"], float(job["momentum"]), float(job["dampening"])
    worker_momentum = bool(momentum) and job["momentum_at"] == "worker" and self.attack is None
    self._momentum = tf.Variable(tf.zeros([self.dimension]), trainable=False, name="worker_momentum")
    model, variables, loss_function = self.model, self.variables, self.loss
    sizes = [int(np.prod(v.shape)) for v in variables]

    def gradient(weights, x, y):
      for variable, part in zip(variables, tf.split(weights, sizes)):
        variable.assign(tf.reshape(part, variable.shape))
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loss_function(y, model(x, training=True)))
        if model.losses:
          loss += tf.add_n(model.losses)
      gradients = tape.gradient(loss, variables)
      return tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0), loss

    signature = [tf.TensorSpec([self.dimension], tf.float32),
                 tf.TensorSpec([None, *self.x_spec[0]], tf.as_dtype(self.x_spec[1])),
                 tf.TensorSpec([None, *self.y_spec[0]], tf.as_dtype(self.y_spec[1]))]

    @tf.function(input_signature=signature)
    def honest_row(weights, x, y):
      row, loss = gradient(weights, x, y)
      if clip is not None:
        row = row * tf.minimum(1.0, clip / tf.maximum(tf.norm(row), 1e-30))
      if worker_momentum:
        self._momentum.assign(momentum * self._momentum + (1.0 - dampening) * row)
        row = self._momentum.read_value()
      return row, loss

    self._gradient = tf.function(gradient, input_signature=signature)
    self._honest_row = honest_row

  def answer(self, request: bytes) -> bytes:
    """The row message answering a batch message (`wire.RefusedMessage` if it is not one)."""
    step, weights, x, y = wire.decode_batch(request, self.dimension, self.x_spec, self.y_spec,
                                            self.job["max_examples"])
    if self.attack is not None:
      row, loss = self._attack(weights, x, y)
    else:
      row, loss = self._honest_row(weights, x, y)
      row, loss = row.numpy(), float(loss)
    # The parameter server computes the model's metrics itself: no accuracy comes from a worker.
    return wire.encode_row(step, row, loss, float("nan"))

  def _attack(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    parts = max(1, min(self.attack.nb_estimates, len(x)))
    estimates, losses = [], []
    for indices in np.array_split(np.arange(len(x)), parts):
      row, loss = self._gradient(weights, x[indices], y[indices])
      estimates.append(row)
      losses.append(float(loss))
    return self.attack(estimates), float(np.mean(losses))
