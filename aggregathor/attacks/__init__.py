"""Simulated Byzantine attacks, registered by name.

    from aggregathor import attacks
    attacks.names()
    byzantine = attacks.get("little")(honest, f_real=2, f_decl=2)   # (f_real, d)

A new attack is one module in this package that subclasses `Attack` and
decorates it with `@register`; nothing else needs editing.
"""

from __future__ import annotations

from aggregathor.attacks._base import Attack
from aggregathor.registry import Registry, import_submodules

__all__ = ["Attack", "register", "get", "names"]

_REGISTRY: Registry[Attack] = Registry("attack")
register = _REGISTRY.register


def names() -> list[str]:
  """The names of the registered attacks."""
  return _REGISTRY.names()


def get(name: str | Attack) -> Attack:
  """A fresh instance of the attack `name`."""
  if isinstance(name, Attack):
    return name
  return _REGISTRY.lookup(name)()


import_submodules(__name__, __path__)
