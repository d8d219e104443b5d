"""The tf.distribute plugin: a strategy with a trusted parameter server that aggregates robustly.

The names below load on first use, so that the command-line fronts and
`strategies.cluster`'s SSH tooling start without importing TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ByzantineStrategy": "strategies.byzantine", "GradientPipeline": "strategies.pipeline",
    "StudyCallback": "strategies.summaries", "StudyWriter": "strategies.summaries",
    "configure_devices": "strategies.devices", "worker_devices": "strategies.devices",
}
__all__ = sorted([*_EXPORTS, "summaries"])


def __getattr__(name: str) -> Any:
  if name == "summaries":
    return importlib.import_module("strategies.summaries")
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
