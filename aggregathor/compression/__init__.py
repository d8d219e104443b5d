"""Gradient compressors, registered by name: what a worker sends instead of its whole row.

    from aggregathor import compression
    compressor = compression.get("topk", dimension=d, ratio=0.01)
    state = compressor.init_state(n)                   # e.g. the n workers' residuals
    payload, state = compressor.encode(rows, state)    # rows: (n, d), one per worker
    received = compressor.decode(payload)              # (n, d) again, what the rule sees
    compressor.payload_bytes                           # bytes a worker sends per step

Each compressor sees (n, d) tensors and its explicit state, nothing else. The
coordinates a worker did not send decode as 0, and every rule sees them as
that value (see the README: coordinate-wise rules then take 0 as a worker's
vote). A new compressor is one module in this package that subclasses
`Compressor` and decorates it with `@register`.
"""

from __future__ import annotations

from typing import Any, Sequence

from aggregathor.compression._base import Compressor
from aggregathor.registry import Registry, import_submodules

__all__ = ["Compressor", "register", "get", "names"]

_REGISTRY: Registry[Compressor] = Registry("compressor")
register = _REGISTRY.register


def names() -> list[str]:
  """The names of the registered compressors."""
  return _REGISTRY.names()


def get(name: str, dimension: int, segments: Sequence[int] | None = None, **args: Any) -> Compressor:
  """The compressor `name` for rows of `dimension` coordinates, cut in the model's variables' `segments`."""
  return _REGISTRY.lookup(name)(dimension, segments, **args)


def params(name: str) -> dict[str, Any]:
  """The arguments of compressor `name`, with their defaults (for the command line, before TensorFlow runs)."""
  return dict(_REGISTRY.lookup(name).params)


import_submodules(__name__, __path__)
