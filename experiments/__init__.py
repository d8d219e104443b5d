"""Experiments: model + dataset pairs, registered by name.

    import experiments
    experiments.names()                     # cifar10, cifar100, digits, fashion-mnist, mnist, svhn
    exp = experiments.get("mnist", **{"idx-dir": "../shared/data/mnist", "batch-size": "64"})
    data = exp.load()                       # Data: numpy arrays, num_classes, input_shape
    model = exp.build_model()               # uncompiled keras.Model outputting logits
    train = exp.train_dataset(nb_workers=7, flipped_workers=(5, 6))   # global batches, worker i's slice i
    experiments.parse_args(params, ["k:v", ...])  # the key:value typing, for any argument table

A new experiment is one module in this package that subclasses `Experiment`
(or `TfdsExperiment`) and decorates it with `@register`; nothing else needs editing.
"""

from __future__ import annotations

from typing import Any

from aggregathor.registry import Registry, import_submodules
from experiments._args import parse_args, split_pairs, typed_pairs
from experiments._base import Experiment, IdxTfdsExperiment, TfdsExperiment
from experiments._data import Data
from experiments.tfds_source import DataUnavailableError

__all__ = ["Data", "DataUnavailableError", "Experiment", "TfdsExperiment", "IdxTfdsExperiment", "register", "get",
           "names", "parse_args", "split_pairs", "typed_pairs"]

_REGISTRY: Registry[Experiment] = Registry("experiment")
register = _REGISTRY.register


def names() -> list[str]:
  """The names of the registered experiments."""
  return _REGISTRY.names()


def get(name: str, **args: Any) -> Experiment:
  """The experiment `name` configured by `args` (keys with dashes, e.g. `batch-size`; strings are typed)."""
  return _REGISTRY.lookup(name)(**args)


import_submodules(__name__, __path__)
