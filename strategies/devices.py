"""Logical devices for simulated workers: one replica per worker on this machine."""

from __future__ import annotations

import math

import tensorflow as tf


def configure_devices(nb_workers: int, use_gpu: bool = False, reuse_gpu: bool = False,
                      gpu_memory_mb: int | None = None) -> list[str]:
  """Splits this machine into `nb_workers` logical devices and returns their names.

  Call it before TensorFlow's runtime starts (before any op runs): TensorFlow fixes
  its logical devices then. On CPU, the CPU is split in `nb_workers`. With
  `use_gpu`, each worker gets a GPU; with `reuse_gpu` (AggregaThor's
  `--reuse-gpu`), several workers share a GPU, each GPU being split into logical
  GPUs of `gpu_memory_mb` (default: an equal share of 80% of the memory).
  """
  if isinstance(nb_workers, bool) or not isinstance(nb_workers, int) or nb_workers < 1:
    raise ValueError(f"expected nb_workers >= 1 as an int, got {nb_workers!r}")
  kind = "GPU" if use_gpu else "CPU"
  physical = tf.config.list_physical_devices(kind)
  if use_gpu and not physical:
    raise ValueError("use_gpu was asked but TensorFlow sees no GPU; drop --use-gpu or install a GPU build "
                     "of TensorFlow (pip install 'tensorflow[and-cuda]')")
  try:
    if use_gpu:
      if len(physical) >= nb_workers:
        pass  # one whole GPU per worker: nothing to split
      elif not reuse_gpu:
        raise ValueError(f"{nb_workers} workers need {nb_workers} GPUs, found {len(physical)}; pass "
                         "reuse_gpu=True (--reuse-gpu) to let several workers share a GPU")
      else:
        per_gpu = math.ceil(nb_workers / len(physical))
        for gpu in physical:
          memory = gpu_memory_mb or _share_of_gpu_memory(gpu, per_gpu)
          tf.config.set_logical_device_configuration(
              gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory)] * per_gpu)
    elif len(tf.config.get_logical_device_configuration(physical[0]) or ()) < nb_workers:
      # A split already made (e.g. by a test harness) that has enough devices is kept.
      tf.config.set_logical_device_configuration(
          physical[0], [tf.config.LogicalDeviceConfiguration()] * nb_workers)
  except RuntimeError as error:
    logical = tf.config.list_logical_devices(kind)
    if len(logical) >= nb_workers:
      return [device.name for device in logical[:nb_workers]]
    raise ValueError(f"{nb_workers} workers need {nb_workers} logical {kind} devices but TensorFlow already "
                     f"started with {len(logical)}; call strategies.configure_devices({nb_workers}) before "
                     "any TensorFlow op runs") from error
  logical = tf.config.list_logical_devices(kind)
  return [device.name for device in logical[:nb_workers]]


def worker_devices(nb_workers: int) -> list[str]:
  """The logical devices the workers run on: GPUs when there are enough, else CPUs."""
  if isinstance(nb_workers, bool) or not isinstance(nb_workers, int) or nb_workers < 1:
    raise ValueError(f"expected nb_workers >= 1 as an int, got {nb_workers!r}")
  for kind in ("GPU", "CPU"):
    logical = tf.config.list_logical_devices(kind)
    if len(logical) >= nb_workers:
      return [device.name for device in logical[:nb_workers]]
  cpus = len(tf.config.list_logical_devices("CPU"))
  raise ValueError(f"{nb_workers} workers need one logical device each, found {cpus} CPU device(s); call "
                   f"strategies.configure_devices({nb_workers}) before any TensorFlow op runs, or pass devices=")


def default_worker_devices(nb_workers: int) -> list[str]:
  """`worker_devices(nb_workers)`, first splitting the CPU into `nb_workers` devices if TensorFlow has not started.

  What `ByzantineStrategy` uses when it is given no devices, so that a program
  needs no `configure_devices` call, as with `MirroredStrategy`. Once the
  runtime has started, its devices are what they are: too few is the error of
  `worker_devices`, which says what to do.
  """
  try:
    configure_devices(nb_workers)
  except ValueError:
    pass  # started with too few CPUs: there may still be enough GPUs, else worker_devices says what to do
  return worker_devices(nb_workers)


def _share_of_gpu_memory(gpu: tf.config.PhysicalDevice, shares: int) -> int:
  details = tf.config.experimental.get_device_details(gpu)
  total_mb = details.get("memory_limit_mb") or 8192
  return max(256, int(0.8 * total_mb / shares))
