"""Per-step study metrics of the aggregation, as in the "Distributed Momentum" paper's code.

El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient
Stochastic Gradient Descent", ICLR 2021. Every `period` steps the recorder keeps,
in variables on the parameter server, the spread and size of the sampled, honest,
attack and defense (aggregated) gradients, their cosines, and which workers a
selection rule kept; `strategies.summaries` writes them to TensorBoard and CSV.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

# Groups of vectors whose spread and size are recorded.
GROUPS = ("sampled", "honest", "attack")
# (dev/‖ḡ‖)² with dev² = Σ‖g_i − ḡ‖²/(n_h − 1) over the honest workers' submitted vectors: the Distributed
# Momentum paper's ratio, compared there with the square of the rule's bound (NaN with one honest worker).
RATIO = "honest/variance-norm-ratio"


def _spread(vectors: tf.Tensor) -> dict[str, tf.Tensor]:
  """Average norm, variance (mean squared distance to the mean) and max |coordinate| of a group."""
  mean = tf.reduce_mean(vectors, axis=0)
  return {
      "norm": tf.reduce_mean(tf.norm(vectors, axis=1)),
      "variance": tf.reduce_mean(tf.reduce_sum(tf.square(vectors - mean), axis=1)),
      "max-coordinate": tf.reduce_max(tf.abs(vectors)),
  }


def _cosine(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  return tf.reduce_sum(x * y) / tf.maximum(tf.norm(x) * tf.norm(y), 1e-30)


def _mean_pairwise_cosine(vectors: tf.Tensor) -> tf.Tensor:
  n = vectors.shape[0]
  if n < 2:
    return tf.constant(1.0, vectors.dtype)
  unit = vectors / tf.maximum(tf.norm(vectors, axis=1, keepdims=True), 1e-30)
  cosines = tf.matmul(unit, unit, transpose_b=True)
  return (tf.reduce_sum(cosines) - tf.linalg.trace(cosines)) / (n * (n - 1))


def _variance_norm_ratio(vectors: tf.Tensor) -> tf.Tensor:
  n = vectors.shape[0]
  if n < 2:
    return tf.constant(float("nan"), vectors.dtype)
  mean = tf.reduce_mean(vectors, axis=0)
  deviation = tf.reduce_sum(tf.square(vectors - mean)) / (n - 1)
  return deviation / tf.maximum(tf.reduce_sum(tf.square(mean)), 1e-30)


class StudyRecorder:
  """Keeps the study metrics of the last recorded step, and per-worker selection counts."""

  def __init__(self, nb_workers: int, nb_real_byz_workers: int, period: int, selects: bool,
               counters: Sequence[str] = ()):
    """`counters`: the names of per-step values a pipeline passes to `record` besides the gradients
    (e.g. a redundancy defence's distorted files), recorded with the metrics."""
    self.nb_workers = nb_workers
    self.counters = tuple(counters)
    self.nb_real_byz_workers = nb_real_byz_workers
    self.period = period
    self.selects = selects
    self.names = self._names()
    self.step: tf.Variable | None = None
    self.recorded_step: tf.Variable | None = None
    self.values: dict[str, tf.Variable] = {}
    self.selected: tf.Variable | None = None
    self.selection_counts: tf.Variable | None = None

  def _names(self) -> list[str]:
    groups = GROUPS if self.nb_real_byz_workers else GROUPS[:2]
    names = [f"{group}/{stat}" for group in groups for stat in ("norm", "variance", "max-coordinate")]
    names += ["defense/norm", "defense/max-coordinate", "defense/deviation",
              "cosine/honest-defense", "cosine/sampled-honest", "cosine/honest-pairwise", RATIO]
    if self.nb_real_byz_workers:
      names.append("cosine/honest-attack")
    return names + list(self.counters)

  def create_state(self) -> None:
    """Creates the variables; the caller picks the scope (the parameter server, not mirrored)."""
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="aggregation_step")
    self.recorded_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="study_recorded_step")
    self.values = {name: tf.Variable(float("nan"), dtype=tf.float64, trainable=False,
                                     name="study_" + name.replace("/", "_").replace("-", "_"))
                   for name in self.names}
    self.selected = tf.Variable(tf.zeros([self.nb_workers], tf.float64), trainable=False, name="selected")
    self.selection_counts = tf.Variable(tf.zeros([self.nb_workers], tf.float64), trainable=False,
                                        name="selection_counts")

  def record(self, sampled: tf.Tensor, submitted: tf.Tensor, aggregated: tf.Tensor,
             selected: tf.Tensor | None, complete: bool = True,
             counters: Mapping[str, tf.Tensor] | None = None, rows_scale: float | None = None) -> list[tf.Operation]:
    """Counts the step, and records the metrics on the study period; returns the ops to depend on.

    `counters`: a value for each name given at construction, no more and no less.
    `complete=False` (rows missing on a cluster) counts the step and its selection, without the metrics.
    `rows_scale`: the rows `sampled` and `submitted` stand for are that many times them (scaled on the
    recorded steps only).
    """
    counters = dict(counters or {})
    if set(counters) != set(self.counters):
      raise ValueError(f"expected the study counters {sorted(self.counters)}, got {sorted(counters)}")
    step = self.step.assign_add(1)
    updates = [step]
    if selected is not None:
      selected = tf.cast(selected, tf.float64)
      updates += [self.selected.assign(selected), self.selection_counts.assign_add(selected)]
    if self.period <= 0 or not complete:
      return updates

    def compute():
      rows = (sampled, submitted) if rows_scale is None else (sampled * rows_scale, submitted * rows_scale)
      metrics = {**self._metrics(*rows, aggregated), **counters}
      assigns = [self.values[name].assign(tf.cast(metrics[name], tf.float64)) for name in self.names]
      with tf.control_dependencies(assigns):
        return self.recorded_step.assign(step)

    updates.append(tf.cond(tf.equal(step % self.period, 0), compute, lambda: tf.identity(self.recorded_step)))
    return updates

  def _metrics(self, sampled: tf.Tensor, submitted: tf.Tensor, aggregated: tf.Tensor) -> dict[str, tf.Tensor]:
    h = self.nb_workers - self.nb_real_byz_workers
    honest = submitted[:h]
    groups = {"sampled": sampled, "honest": honest}
    if self.nb_real_byz_workers:
      groups["attack"] = submitted[h:]
    metrics = {f"{group}/{stat}": value for group, vectors in groups.items()
               for stat, value in _spread(vectors).items()}
    honest_mean = tf.reduce_mean(honest, axis=0)
    metrics["defense/norm"] = tf.norm(aggregated)
    metrics["defense/max-coordinate"] = tf.reduce_max(tf.abs(aggregated))
    metrics["defense/deviation"] = tf.norm(aggregated - honest_mean)
    metrics["cosine/honest-defense"] = _cosine(honest_mean, aggregated)
    metrics["cosine/sampled-honest"] = _cosine(tf.reduce_mean(sampled, axis=0), honest_mean)
    metrics["cosine/honest-pairwise"] = _mean_pairwise_cosine(honest)
    metrics[RATIO] = _variance_norm_ratio(honest)
    if self.nb_real_byz_workers:
      metrics["cosine/honest-attack"] = _cosine(honest_mean, tf.reduce_mean(groups["attack"], axis=0))
    return metrics

  def selection_rates(self) -> tf.Tensor:
    """(n,) fraction of the steps so far in which each worker was kept."""
    return self.selection_counts / tf.maximum(tf.cast(self.step, tf.float64), 1.0)
