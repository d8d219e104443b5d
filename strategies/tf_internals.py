"""The private TensorFlow internals this project uses, in one place, each with why no public API does the job.

Everything else goes through `tf.*` and `keras.*`. When TensorFlow moves one of
these, this is the one module to change.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf
from tensorflow.python.distribute import cross_device_ops  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.distribute import cross_device_utils  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.distribute import device_util  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.distribute import distribute_utils  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.distribute import values  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-direct-tensorflow-import

# A cross-device reduction receives and returns these; tf.distribute exposes only their base class,
# DistributedValues, which cannot tell per-replica values from mirrored ones, nor make one.
PerReplica = values.PerReplica


def canonical_device(name: str) -> str:
  """The full name of a device ("/cpu:0" -> "/job:localhost/replica:0/task:0/device:CPU:0").

  tf.DeviceSpec parses a name but does not fill in the default job, replica and
  task, so two names of one device would compare different.
  """
  return device_util.canonicalize(name)


def destination_devices(destinations: Any, canonicalize) -> list[str]:
  """The devices a reduction's `destinations` (a device, a variable, a distributed value) stand for.

  The public CrossDeviceOps API hands over `destinations` without a way to list them.
  """
  return list(cross_device_ops.get_devices_from(destinations, canonicalize))


def mirrored(tensor: tf.Tensor, devices: Sequence[str]):
  """A Mirrored value holding a copy of `tensor` on each of `devices`: what a reduction must return.

  No public API builds a Mirrored value (tf.distribute only reads them).
  """
  copies = [cross_device_utils.copy_tensor_or_indexed_slices_to_device(tensor, device) for device in devices]
  return distribute_utils.regroup(copies, wrap_class=values.Mirrored)


def plain_variable(**kwargs) -> tf.Variable:
  """An ordinary variable, made inside a `tf.variable_creator_scope`, bypassing the strategy's creator.

  Inside a strategy's scope, `tf.Variable` always goes through the strategy (and
  becomes mirrored); the creator scope's last creator must build the variable itself.
  """
  kwargs.pop("synchronization", None)
  kwargs.pop("aggregation", None)
  return resource_variable_ops.ResourceVariable(**kwargs)


def keep_merge_call(strategy: tf.distribute.MirroredStrategy) -> None:
  """Keeps a MirroredStrategy's cross-device ops even for XLA-compiled steps on GPUs.

  MirroredStrategy swaps any cross-device ops for its collective mean when the
  step is XLA-compiled on all-GPU devices (Keras' jit_compile="auto"); there is
  no option to keep them, and the swap would skip the rule and the attack silently.
  """
  strategy.extended._use_merge_call = lambda: True  # pylint: disable=protected-access


def set_cross_device_ops(strategy: tf.distribute.experimental.CentralStorageStrategy,
                         reduction: tf.distribute.CrossDeviceOps) -> None:
  """Gives a CentralStorageStrategy its cross-device reduction.

  Its constructor takes none (it always reduces to one device), unlike MirroredStrategy's.
  """
  strategy.extended._cross_device_ops = reduction  # pylint: disable=protected-access
