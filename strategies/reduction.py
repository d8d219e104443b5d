"""The cross-device reduction that sends the gradients through the parameter server's pipeline."""

from __future__ import annotations

import tensorflow as tf
from strategies import tf_internals
from strategies.pipeline import GradientPipeline


class RobustReduction(tf.distribute.CrossDeviceOps):
  """Replaces the mean all-reduce of the gradients with one robust aggregation.

  Keras (`optimizer.apply_gradients`) reduces all the per-replica gradients of a
  step in one SUM batch. Each replica's gradients are flattened into one row
  (what a worker would send), the rows are concatenated in one copy on the
  parameter-server device, the (n, d) matrix goes through the pipeline there,
  and the result is split back into the variables' shapes and mirrored to the
  replicas. Every other reduction (metrics, single tensors, MEAN, integer
  values) stays a plain reduction.

  Each replica's loss is expected to be scaled by 1/n as Keras and
  `tf.nn.compute_average_loss` do, so that the plain SUM is the mean gradient;
  the rows are rescaled by n so that the rule sees each worker's own gradient.
  """

  def __init__(self, pipeline: GradientPipeline, ps_device: str, loss_scaled_by_replicas: bool = True):
    super().__init__()
    self.pipeline = pipeline
    self.ps_device = ps_device
    self.loss_scaled_by_replicas = loss_scaled_by_replicas
    self._plain = tf.distribute.ReductionToOneDevice(reduce_to_device=ps_device)

  def reduce_implementation(self, reduce_op, per_replica_value, destinations, options):
    return self._plain.reduce_implementation(reduce_op, per_replica_value, destinations, options)

  def _gather_implementation(self, per_replica_value, destinations, axis, options):
    return self._plain._gather_implementation(per_replica_value, destinations, axis, options)  # pylint: disable=protected-access

  def batch_reduce(self, reduce_op, value_destination_pairs, options=None):
    # With one replica the base class hands the values back without calling
    # batch_reduce_implementation, which would skip clipping, momentum and the study.
    if self.pipeline.nb_workers == 1:
      pairs = [(tf_internals.PerReplica((value,)) if isinstance(value, tf.Tensor) else value, destinations)
               for value, destinations in value_destination_pairs]
      if self._is_gradient_batch(reduce_op, pairs):
        options = options or tf.distribute.experimental.CommunicationOptions()
        return self.batch_reduce_implementation(reduce_op, pairs, options)
    return super().batch_reduce(reduce_op, value_destination_pairs, options)

  def batch_reduce_implementation(self, reduce_op, value_destination_pairs, options):
    if not self._is_gradient_batch(reduce_op, value_destination_pairs):
      return self._plain.batch_reduce_implementation(reduce_op, value_destination_pairs, options)
    per_replica = [value for value, _ in value_destination_pairs]
    n = len(per_replica[0].values)
    dtypes = [value.values[0].dtype for value in per_replica]
    work_dtype = tf.float64 if tf.float64 in dtypes else tf.float32
    shapes = [value.values[0].shape for value in per_replica]
    sizes = [shape.num_elements() for shape in shapes]
    devices = [per_replica[0].values[replica].device for replica in range(n)]

    def flat_parts(replica: int) -> list[tf.Tensor]:
      # Sparse gradients (IndexedSlices) are made dense.
      return [tf.reshape(tf.cast(tf.convert_to_tensor(value.values[replica]), work_dtype), [-1])
              for value in per_replica]

    with tf.device(self.ps_device):
      if all(_on_host(device, self.ps_device) for device in devices):
        # Tensors move between this host's CPU devices by reference: one
        # concatenation of every part, row after row, is the only copy.
        parts = [part for replica in range(n) for part in flat_parts(replica)]
        gradients = tf.reshape(tf.concat(parts, axis=0), [n, sum(sizes)])
      else:
        # From accelerators or other tasks, one transfer per worker: each row is assembled on its device.
        rows = []
        for replica, device in enumerate(devices):
          with tf.device(device):
            rows.append(tf.concat(flat_parts(replica), axis=0))
        gradients = tf.stack(rows)
      # The rows are n times what each replica holds (its loss was scaled by 1/n): the pipeline scales
      # the rule's output instead of the (n, d) rows where that is the same.
      scale = n if reduce_op == tf.distribute.ReduceOp.SUM and self.loss_scaled_by_replicas else None
      aggregated = self.pipeline(gradients, scale=scale)
      pieces = [tf.cast(tf.reshape(piece, shape), dtype)
                for piece, shape, dtype in zip(tf.split(aggregated, sizes), shapes, dtypes)]
    return [self._mirror(piece, destinations) for piece, (_, destinations) in zip(pieces, value_destination_pairs)]

  def _is_gradient_batch(self, reduce_op, value_destination_pairs) -> bool:
    if reduce_op not in (tf.distribute.ReduceOp.SUM, tf.distribute.ReduceOp.MEAN):
      return False
    for value, _ in value_destination_pairs:
      if not isinstance(value, tf_internals.PerReplica) or len(value.values) != self.pipeline.nb_workers:
        return False
      if not value.values[0].dtype.is_floating or not value.values[0].shape.is_fully_defined():
        return False
    return True

  def _mirror(self, tensor: tf.Tensor, destinations):
    return tf_internals.mirrored(tensor, tf_internals.destination_devices(destinations, self._canonicalize_devices))


def _on_host(device: str, ps_device: str) -> bool:
  """Whether a tensor on `device` lives in the parameter server's memory: a CPU device of the PS's own task."""
  spec, ps = tf.DeviceSpec.from_string(device or "/device:CPU:0"), tf.DeviceSpec.from_string(ps_device)
  same_task = all(getattr(spec, part) in (None, getattr(ps, part)) for part in ("job", "replica", "task"))
  return same_task and spec.device_type in (None, "CPU")
