"""Asynchronous parameter servers simulated in one process: seeded arrivals, and AdaComp's server.

`Arrivals` is the clock that both asynchronous servers share (AdaComp's here,
HiPS's global one in `strategies.global_updates`): each sender (a worker, or a
party) fetches the weights and the server's iteration count, computes for a
drawn time (exponential, sender i's mean 1 + spread·i/(n−1), from the run's
seed), and sends; the next arrival is the earliest, so senders arrive out of
order on stale weights as on a real cluster. The state (each sender's fetched
weights and iteration, the clock, how many rounds each computed) lives in
variables, and a checkpoint resumes it.

`AsynchronousServer` is AdaComp's: Hardy, Le Merrer, Sericola, "Distributed
deep learning on edge-devices: feasibility via adaptive compression", IEEE NCA
2017. Each worker sends one compressed minibatch gradient; the server applies
each as it arrives, every coordinate divided by its staleness
(`aggregathor.compression.staleness`). There is no rule across workers: each
update is applied alone.
"""

from __future__ import annotations

import tensorflow as tf

from aggregathor.compression import staleness
from strategies.pipeline import plain_variables


class Arrivals:
  """The simulated senders' fetched weights, drawn compute times and the server's iteration count."""

  def __init__(self, nb_senders: int, dimension: int, delay_spread: float = 1.0, seed: int = 0,
               prefix: str = "async"):
    if nb_senders < 1 or dimension < 1:
      raise ValueError(f"expected at least one sender and one coordinate, got {nb_senders} and {dimension}")
    if not delay_spread >= 0:
      raise ValueError(f"expected a delay spread >= 0, got {delay_spread}")
    self.nb_senders, self.dimension = nb_senders, dimension
    means = [1.0 + delay_spread * i / max(nb_senders - 1, 1) for i in range(nb_senders)]
    with tf.init_scope(), plain_variables():
      self._means = tf.constant(means, tf.float64)
      self.fetched = tf.Variable(tf.zeros([nb_senders, dimension]), trainable=False, name=f"{prefix}_fetched")
      self.fetched_at = tf.Variable(tf.zeros([nb_senders], tf.int64), trainable=False, name=f"{prefix}_fetched_at")
      self.arrival = tf.Variable(tf.zeros([nb_senders], tf.float64), trainable=False, name=f"{prefix}_arrival")
      self.computed = tf.Variable(tf.zeros([nb_senders], tf.int64), trainable=False, name=f"{prefix}_computed")
      self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{prefix}_iteration")
      self.started = tf.Variable(False, trainable=False, name=f"{prefix}_started")
      self.last_delay = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{prefix}_last_delay")
      self._generator = tf.random.Generator.from_seed(seed)

  def variables(self) -> dict[str, tf.Variable]:
    """The state to checkpoint, by name."""
    return {"fetched": self.fetched, "fetched_at": self.fetched_at, "arrival": self.arrival,
            "computed": self.computed, "iteration": self.iteration, "started": self.started,
            "generator": self._generator.state}

  def _draw(self) -> tf.Tensor:
    return -tf.math.log(1.0 - self._generator.uniform([self.nb_senders], dtype=tf.float64)) * self._means

  def start(self, weights: tf.Tensor) -> None:
    """Every sender fetches `weights` (d,) at iteration 0, once per run (a resumed run keeps its state)."""
    if not bool(self.started.numpy()):
      self.fetched.assign(tf.tile(weights[None], [self.nb_senders, 1]))
      self.arrival.assign(self._draw())
      self.started.assign(True)

  def next_sender(self) -> tf.Tensor:
    """The sender whose update arrives next (the earliest simulated arrival)."""
    return tf.argmin(self.arrival, output_type=tf.int32)

  def delay(self, sender: tf.Tensor) -> tf.Tensor:
    """The updates applied since `sender` fetched its weights: its update's staleness."""
    return self.iteration - self.fetched_at[sender]

  def count(self, delay: tf.Tensor) -> None:
    """One more update applied, `delay` stale."""
    self.iteration.assign_add(1)
    self.last_delay.assign(delay)

  def fetch(self, sender: tf.Tensor, weights: tf.Tensor) -> None:
    """`sender` fetches `weights` (d,) now and starts its next round, which takes a drawn time."""
    self.fetched[sender].assign(weights)
    self.fetched_at[sender].assign(self.iteration)
    self.computed[sender].assign(self.computed[sender] + 1)
    self.arrival[sender].assign(self.arrival[sender] + self._draw()[sender])


class AsynchronousServer(Arrivals):
  """AdaComp's server (see the module's docstring): `receive` a worker's row, then the worker's `fetch`."""

  def __init__(self, nb_workers: int, dimension: int, compressor=None, delay_spread: float = 1.0,
               history: int = 256, seed: int = 0):
    super().__init__(nb_workers, dimension, delay_spread, seed)
    if history < 1:
      raise ValueError(f"expected a history of at least one update, got {history}")
    self.nb_workers, self.compressor = nb_workers, compressor
    with tf.init_scope(), plain_variables():
      self.touched = tf.Variable(tf.zeros([history, dimension], tf.bool), trainable=False, name="async_touched")
      state = compressor.init_state(nb_workers) if compressor is not None else {}
      self._residuals = {name: tf.Variable(value, trainable=False, name=f"async_compression_{name}")
                         for name, value in state.items()}

  def variables(self) -> dict[str, tf.Variable]:
    return {**super().variables(), "touched": self.touched,
            **{"compression_" + name: variable for name, variable in self._residuals.items()}}

  def next_worker(self) -> tf.Tensor:
    """The worker whose gradient arrives next."""
    return self.next_sender()

  def receive(self, worker: tf.Tensor, row: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """The (d,) step to apply for `worker`'s gradient `row` (d,): compressed, decoded, divided by staleness.

    `weights`, the server's now, are for HiPS's global server's interface: AdaComp's needs none."""
    del weights
    sent = row[None]
    if self.compressor is not None:
      state = {name: variable[worker:worker + 1] for name, variable in self._residuals.items()}
      payload, state = self.compressor.encode(sent, state)
      for name, value in state.items():
        self._residuals[name][worker:worker + 1].assign(value)
      sent = tf.cast(self.compressor.decode(payload), row.dtype)
    sent = sent[0]
    delay = self.delay(worker)
    stale = staleness.staleness(self.touched, self.iteration, delay)
    step = staleness.scale(sent, stale)
    slot = tf.math.floormod(self.iteration, self.touched.shape[0])
    self.touched[slot].assign(tf.not_equal(sent, 0))
    self.count(delay)
    return step
