"""AggregaThor for TensorFlow 2: Byzantine-resilient gradient aggregation."""

from aggregathor import attacks, gars

__version__ = "0.1.0"

__all__ = ["attacks", "gars", "__version__"]
