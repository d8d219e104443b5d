"""A name -> class registry shared by rules, attacks and experiments."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to registered classes; unknown names raise a helpful `ValueError`."""

  def __init__(self, what: str):
    self._what = what
    self._entries: dict[str, type[T]] = {}

  def register(self, cls: type[T]) -> type[T]:
    """Class decorator: registers `cls` under its `name` attribute."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
      raise ValueError(f"{cls.__qualname__} needs a non-empty string `name` to be registered as a {self._what}")
    if name in self._entries and self._entries[name] is not cls:
      raise ValueError(f"{self._what} {name!r} is already registered by {self._entries[name].__module__}")
    self._entries[name] = cls
    return cls

  def names(self, where: Callable[[type[T]], bool] | None = None) -> list[str]:
    return sorted(name for name, cls in self._entries.items() if where is None or where(cls))

  def lookup(self, name: str, where: Callable[[type[T]], bool] | None = None) -> type[T]:
    if not isinstance(name, str):
      raise ValueError(f"expected the name of a {self._what} as a string, got {name!r}")
    cls = self._entries.get(name)
    if cls is None or (where is not None and not where(cls)):
      known = self.names(where)
      hint = difflib.get_close_matches(name, known, n=1)
      suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
      raise ValueError(f"unknown {self._what} {name!r}{suggestion}; known: {', '.join(known)}")
    return cls

  def __contains__(self, name: object) -> bool:
    return name in self._entries


def import_submodules(package_name: str, package_path: Iterable[str]) -> None:
  """Imports every public module of a package, so that each registers itself.

  A new rule, attack or experiment is then one file and no edit elsewhere.
  """
  for module in pkgutil.iter_modules(package_path):
    if not module.name.startswith("_"):
      importlib.import_module(f"{package_name}.{module.name}")
