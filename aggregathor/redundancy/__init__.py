"""Redundant placements of the batch's files on the workers, registered by name (DETOX, ByzShield).

    from aggregathor import redundancy
    placement = redundancy.get("mols", nb_workers=15, replication=3)
    placement.files           # for each file, the workers holding it (0-indexed)
    placement.worst_case(4)   # the most files some 4 workers hold a majority of, and such a set

Each part of the batch (a file) is computed by `replication` workers; a
majority vote per file, then a robust rule across the voted files, is the
defence (Rajput et al., "DETOX", NeurIPS 2019; Konstantinidis & Ramamoorthy,
"ByzShield", MLSys 2021). A new placement is one module in this package that
subclasses `Placement` and decorates it with `@register`.
"""

from __future__ import annotations

from typing import Any

from aggregathor.redundancy._base import Placement, WorstCase
from aggregathor.registry import Registry, import_submodules

__all__ = ["Placement", "WorstCase", "register", "get", "names"]

_REGISTRY: Registry[Placement] = Registry("placement")
register = _REGISTRY.register


def names() -> list[str]:
  """The names of the registered placements."""
  return _REGISTRY.names()


def get(name: str, nb_workers: int, replication: int, **kwargs: Any) -> Placement:
  """The placement `name` of files on `nb_workers` workers, each file on `replication` of them."""
  return _REGISTRY.lookup(name)(nb_workers, replication, **kwargs)


import_submodules(__name__, __path__)
