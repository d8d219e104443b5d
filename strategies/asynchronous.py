"""AdaComp's asynchronous parameter server, simulated in one process with seeded worker delays.

Hardy, Le Merrer, Sericola, "Distributed deep learning on edge-devices:
feasibility via adaptive compression", IEEE NCA 2017. Each worker fetches the
weights and the server's iteration count, computes one minibatch gradient on
them, compresses it, and sends it; the server applies each gradient as it
arrives, every coordinate divided by its staleness
(`aggregathor.compression.staleness`). Here the workers' compute times are
drawn (exponential, worker i's mean 1 + spread·i/(n−1), from the run's seed),
so that they arrive out of order on stale weights as on a real cluster; the
state (each worker's fetched weights and iteration, the clock, the touched
history, the residuals) lives in variables, and a checkpoint resumes it. There
is no rule across workers: each update is applied alone.
"""

from __future__ import annotations

import tensorflow as tf

from aggregathor.compression import staleness
from strategies.pipeline import plain_variables


class AsynchronousServer:
  """The simulated workers' fetched weights and clock, and the server's update history; `receive` and `fetch`."""

  def __init__(self, nb_workers: int, dimension: int, compressor=None, delay_spread: float = 1.0,
               history: int = 256, seed: int = 0):
    if nb_workers < 1 or dimension < 1:
      raise ValueError(f"expected at least one worker and one coordinate, got {nb_workers} and {dimension}")
    if not delay_spread >= 0:
      raise ValueError(f"expected a delay spread >= 0, got {delay_spread}")
    if history < 1:
      raise ValueError(f"expected a history of at least one update, got {history}")
    self.nb_workers, self.dimension, self.compressor = nb_workers, dimension, compressor
    means = [1.0 + delay_spread * i / max(nb_workers - 1, 1) for i in range(nb_workers)]
    with tf.init_scope(), plain_variables():
      self._means = tf.constant(means, tf.float64)
      self.fetched = tf.Variable(tf.zeros([nb_workers, dimension]), trainable=False, name="async_fetched")
      self.fetched_at = tf.Variable(tf.zeros([nb_workers], tf.int64), trainable=False, name="async_fetched_at")
      self.arrival = tf.Variable(tf.zeros([nb_workers], tf.float64), trainable=False, name="async_arrival")
      self.computed = tf.Variable(tf.zeros([nb_workers], tf.int64), trainable=False, name="async_computed")
      self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="async_iteration")
      self.touched = tf.Variable(tf.zeros([history, dimension], tf.bool), trainable=False, name="async_touched")
      self.started = tf.Variable(False, trainable=False, name="async_started")
      self.last_delay = tf.Variable(0, dtype=tf.int64, trainable=False, name="async_last_delay")
      self._generator = tf.random.Generator.from_seed(seed)
      state = compressor.init_state(nb_workers) if compressor is not None else {}
      self._residuals = {name: tf.Variable(value, trainable=False, name=f"async_compression_{name}")
                         for name, value in state.items()}

  def variables(self) -> dict[str, tf.Variable]:
    """The state to checkpoint, by name."""
    return {"fetched": self.fetched, "fetched_at": self.fetched_at, "arrival": self.arrival,
            "computed": self.computed, "iteration": self.iteration, "touched": self.touched,
            "started": self.started, "generator": self._generator.state,
            **{"compression_" + name: variable for name, variable in self._residuals.items()}}

  def _draw(self) -> tf.Tensor:
    return -tf.math.log(1.0 - self._generator.uniform([self.nb_workers], dtype=tf.float64)) * self._means

  def start(self, weights: tf.Tensor) -> None:
    """Every worker fetches `weights` (d,) at iteration 0, once per run (a resumed run keeps its state)."""
    if not bool(self.started.numpy()):
      self.fetched.assign(tf.tile(weights[None], [self.nb_workers, 1]))
      self.arrival.assign(self._draw())
      self.started.assign(True)

  def next_worker(self) -> tf.Tensor:
    """The worker whose gradient arrives next (the earliest simulated arrival)."""
    return tf.argmin(self.arrival, output_type=tf.int32)

  def receive(self, worker: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
    """The (d,) step to apply for `worker`'s gradient `row` (d,): compressed, decoded, divided by staleness."""
    sent = row[None]
    if self.compressor is not None:
      state = {name: variable[worker:worker + 1] for name, variable in self._residuals.items()}
      payload, state = self.compressor.encode(sent, state)
      for name, value in state.items():
        self._residuals[name][worker:worker + 1].assign(value)
      sent = tf.cast(self.compressor.decode(payload), row.dtype)
    sent = sent[0]
    delay = self.iteration - self.fetched_at[worker]
    stale = staleness.staleness(self.touched, self.iteration, delay)
    step = staleness.scale(sent, stale)
    slot = tf.math.floormod(self.iteration, self.touched.shape[0])
    self.touched[slot].assign(tf.not_equal(sent, 0))
    self.iteration.assign_add(1)
    self.last_delay.assign(delay)
    return step

  def fetch(self, worker: tf.Tensor, weights: tf.Tensor) -> None:
    """`worker` fetches `weights` (d,) now and starts its next gradient, which takes a drawn time."""
    self.fetched[worker].assign(weights)
    self.fetched_at[worker].assign(self.iteration)
    self.computed[worker].assign(self.computed[worker] + 1)
    self.arrival[worker].assign(self.arrival[worker] + self._draw()[worker])
