"""The tf.distribute plugin: a strategy with a trusted parameter server that aggregates robustly."""

from strategies.byzantine import ByzantineStrategy
from strategies.devices import configure_devices, worker_devices
from strategies.pipeline import GradientPipeline

__all__ = ["ByzantineStrategy", "GradientPipeline", "configure_devices", "worker_devices"]
