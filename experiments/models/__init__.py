"""Model architectures, registered by name; each builds an uncompiled Keras model that outputs logits.

    from experiments import models
    models.names()                                    # cifarnet, lenet, mlp, resnet18, resnet20, vgg11
    model = models.get("lenet", (28, 28, 1), 10)      # keras.Model, (batch, 10) logits

A new architecture is one module in this package that subclasses `Architecture`
and decorates it with `@register`; nothing else needs editing.
"""

from __future__ import annotations

from typing import Sequence

import keras

from aggregathor.registry import Registry, import_submodules
from experiments.models._base import Architecture

__all__ = ["Architecture", "register", "get", "names"]

_REGISTRY: Registry[Architecture] = Registry("model")
register = _REGISTRY.register


def names() -> list[str]:
  """The names of the registered architectures."""
  return _REGISTRY.names()


def lookup(name: str) -> type[Architecture]:
  """The class of the architecture `name` (ValueError listing the known ones if unknown)."""
  return _REGISTRY.lookup(name)


def get(name: str, input_shape: Sequence[int], num_classes: int) -> keras.Model:
  """A fresh, uncompiled model `name` for inputs of `input_shape` (no batch axis), outputting `num_classes` logits."""
  return _REGISTRY.lookup(name).build(input_shape, num_classes)


import_submodules(__name__, __path__)
