"""`ByzantineStrategy`: a tf.distribute strategy whose gradients go through a robust rule."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from aggregathor import attacks, gars
from strategies import tf_internals
from strategies.devices import default_worker_devices
from strategies.pipeline import GradientPipeline
from strategies.reduction import RobustReduction


class PipelineStrategyMixin:
  """What every strategy that aggregates with a `GradientPipeline` (its `pipeline`) adds to TensorFlow's."""

  pipeline: GradientPipeline

  def reduce(self, reduce_op, value, axis):
    check_replica_shapes(value, axis, self.num_replicas_in_sync)
    return super().reduce(reduce_op, value, axis)

  @property
  def study(self):
    """The study metrics recorder (`strategies.study.StudyRecorder`)."""
    return self.pipeline.study


class ByzantineStrategy(PipelineStrategyMixin, tf.distribute.MirroredStrategy):
  """Synchronous training with a trusted parameter server that aggregates with a GAR.

  One replica per worker, on this machine's logical devices. Instead of the mean
  all-reduce, the parameter server gathers the n workers' gradients and combines
  them with `aggregator` (a name from `aggregathor.gars`, chains like
  `nnm>krum` included, or a `Rule`), tolerating `nb_decl_byz_workers` Byzantine
  workers. The last `nb_real_byz_workers` workers are Byzantine: with an
  `attack` (a name from `aggregathor.attacks` or an `Attack`) they send what it
  builds from the honest gradients.

  Keras `compile/fit/evaluate` and custom loops (`strategy.run` then
  `optimizer.apply_gradients`) work unchanged inside `strategy.scope()`, as with
  `tf.distribute.MirroredStrategy`: scale each replica's loss by 1/n (Keras does;
  custom loops use `tf.nn.compute_average_loss`). On GPUs, compile Keras models
  with `jit_compile=False`: the robust reduction runs outside XLA.

  Keyword options:
    momentum, momentum_at, dampening: momentum β at the "update" (the server's
      momentum on the aggregate), at each "worker" (honest workers send their
      momentum), or at the "server" per worker (El-Mhamdi et al., ICLR 2021).
    clip: L2 norm at which the honest gradients are clipped (None: no clipping).
    study_period: record the study metrics every that many steps (0: never);
      see `strategies.StudyWriter` and `strategies.StudyCallback`.
    devices: the worker devices (default: one logical device per worker, GPUs
      when there are enough, else CPUs; before TensorFlow's runtime starts, the
      CPU is split into nb_workers devices, see `strategies.configure_devices`). ps_device: the parameter server's device.
    pipeline: a pipeline of one's own (e.g. `strategies.redundancy.RedundancyPipeline`, whose replicas are the
      files), instead of the one these arguments build.
  """

  def __init__(self, aggregator: str | gars.Rule, nb_workers: int, nb_decl_byz_workers: int = 0,
               nb_real_byz_workers: int = 0, attack: str | attacks.Attack | None = None,
               aggregator_args: Mapping[str, Any] | None = None, attack_args: Mapping[str, Any] | None = None, *,
               momentum: float = 0.0, momentum_at: str = "update", dampening: float = 0.0,
               clip: float | None = None, study_period: int = 0, devices: Sequence[str] | None = None,
               ps_device: str = "/job:localhost/replica:0/task:0/device:CPU:0",
               loss_scaled_by_replicas: bool = True, pipeline: GradientPipeline | None = None):
    if pipeline is None:
      pipeline = GradientPipeline(aggregator, nb_workers, nb_decl_byz_workers, nb_real_byz_workers, attack,
                                  aggregator_args, attack_args, momentum=momentum, momentum_at=momentum_at,
                                  dampening=dampening, clip=clip, study_period=study_period)
    elif pipeline.nb_workers != nb_workers:
      raise ValueError(f"the pipeline given aggregates {pipeline.nb_workers} rows, the strategy has {nb_workers} "
                       "replicas")
    devices = list(devices) if devices is not None else default_worker_devices(nb_workers)
    # Canonical names, so that "/cpu:0" and its full name count as the same device.
    if len(devices) != nb_workers or len({tf_internals.canonical_device(device) for device in devices}) != nb_workers:
      raise ValueError(f"expected {nb_workers} distinct worker devices, got {devices}")
    super().__init__(devices=devices, cross_device_ops=RobustReduction(pipeline, ps_device, loss_scaled_by_replicas))
    self.pipeline = pipeline
    tf_internals.keep_merge_call(self)

def check_replica_shapes(value, axis, nb_replicas: int) -> None:
  """Refuses, with what to do, a reduction of per-replica values of different shapes.

  Keras 3 reduces the first data batch across replicas to build the model
  (`_maybe_symbolic_build`): with an uneven split, TensorFlow's error is a bare
  AddN shape mismatch.
  """
  if axis is not None:
    return
  for per_replica in tf.nest.flatten(value):
    if not isinstance(per_replica, tf_internals.PerReplica):
      continue
    shapes = [tuple(v.shape) for v in per_replica.values if isinstance(v, tf.Tensor) and v.shape.is_fully_defined()]
    if len(set(shapes)) > 1:
      raise ValueError(f"cannot reduce values of different shapes across the replicas: {shapes}. With Keras "
                       f"fit/evaluate/predict, use a batch size that is a multiple of the {nb_replicas} workers: "
                       "Keras reduces the first batch across the replicas when it builds the model")
