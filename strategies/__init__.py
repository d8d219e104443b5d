"""The tf.distribute plugin: a strategy with a trusted parameter server that aggregates robustly."""

from strategies import summaries
from strategies.byzantine import ByzantineStrategy
from strategies.devices import configure_devices, worker_devices
from strategies.pipeline import GradientPipeline
from strategies.summaries import StudyCallback, StudyWriter

__all__ = ["ByzantineStrategy", "GradientPipeline", "StudyCallback", "StudyWriter", "configure_devices", "summaries",
           "worker_devices"]
