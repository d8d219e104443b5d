"""Base classes of the experiments: a dataset, a default model, a loss and metrics."""

from __future__ import annotations

from typing import Any, ClassVar, Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from experiments import idx, models, pipeline, tfds_source
from experiments._args import parse_args
from experiments._data import Data

__all__ = ["Data", "Experiment", "TfdsExperiment", "IdxTfdsExperiment"]


class Experiment:
  """A model + dataset pair, configured by `params` (argument name -> default).

  Subclasses set `name`, `description`, `input_shape`, `num_classes`, their
  `params` (at least `model` and `batch-size`) and implement `_load`.
  Arguments: `model` (see `experiments.models.names()`), `batch-size` (per
  worker), `eval-batch-size`, `alpha` (None: iid split across workers, else the
  Dirichlet concentration of a non-iid split) and `data-dir` (where the dataset
  lives, for those read from disk).
  """

  name: ClassVar[str] = ""
  description: ClassVar[str] = ""
  input_shape: ClassVar[tuple[int, ...]] = ()
  num_classes: ClassVar[int] = 0
  params: ClassVar[Mapping[str, Any]] = {
      "model": "mlp", "batch-size": 32, "eval-batch-size": 500, "alpha": None, "data-dir": None}
  # Types of the parameters whose default (None) does not tell.
  param_types: ClassVar[Mapping[str, type]] = {"alpha": float}

  def __init__(self, **args: Any):
    what = f"experiment {self.name}"
    self.args: dict[str, Any] = {**self.params, **parse_args(self.params, args, self.param_types, what)}
    for key in ("batch-size", "eval-batch-size"):
      if key in self.args and self.args[key] < 1:
        raise ValueError(f"{what}: {key} must be >= 1, got {self.args[key]}")
    alpha = self.args.get("alpha")
    if alpha is not None and not (np.isfinite(alpha) and alpha > 0):
      raise ValueError(f"{what}: alpha must be a positive number (or none for an iid split), got {alpha}")
    # Fail now on a model that does not exist or does not fit the images, not after loading the data.
    models.lookup(self.args["model"]).check(self.input_shape, self.num_classes)
    self._data: Data | None = None

  def __repr__(self) -> str:
    changed = {k: v for k, v in self.args.items() if v != self.params[k]}
    return f"experiments.get({self.name!r}" + (f", **{changed!r})" if changed else ")")

  # Public API

  def load(self) -> Data:
    """The train and test arrays (loaded once, then cached)."""
    if self._data is None:
      data = self._load()
      if data.input_shape != tuple(self.input_shape) or data.num_classes != self.num_classes:
        raise ValueError(f"experiment {self.name}: the loaded data has input shape {data.input_shape} and "
                         f"{data.num_classes} classes, expected {tuple(self.input_shape)} and {self.num_classes}")
      self._data = data
    return self._data

  def build_model(self) -> keras.Model:
    """A fresh, uncompiled Keras model outputting logits (build it inside the strategy's scope)."""
    return models.get(self.args["model"], self.input_shape, self.num_classes)

  def loss(self) -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def metrics(self) -> list[Any]:
    return ["sparse_categorical_accuracy"]

  def train_dataset(self, nb_workers: int, flipped_workers: Iterable[int] = (), seed: int = 0) -> tf.data.Dataset:
    """Infinite global batches of nb_workers * batch-size examples, worker i's slice i (see `pipeline.train_dataset`)."""
    return pipeline.train_dataset(self.load(), nb_workers, self.args["batch-size"], self.args.get("alpha"),
                                  flipped_workers, seed)

  def worker_dataset(self, nb_workers: int, worker: int, flipped_workers: Iterable[int] = (),
                     seed: int = 0) -> tf.data.Dataset:
    """Worker `worker`'s slices of `train_dataset`'s batches alone, for a worker process (see `pipeline.worker_dataset`)."""
    return pipeline.worker_dataset(self.load(), nb_workers, self.args["batch-size"], worker, self.args.get("alpha"),
                                   flipped_workers, seed)

  def test_dataset(self) -> tf.data.Dataset:
    """The test split, once, in batches of eval-batch-size."""
    return pipeline.test_dataset(self.load(), self.args["eval-batch-size"])

  # To implement

  def _load(self) -> Data:
    raise NotImplementedError


class TfdsExperiment(Experiment):
  """An experiment whose dataset comes through tensorflow-datasets, `data-dir` being the tfds data directory."""

  tfds_name: ClassVar[str] = ""
  # Where tfds downloads the dataset from: checked (3 s) before any download.
  download_url: ClassVar[str] = ""

  def _hint(self) -> str:
    return ""

  def _load(self) -> Data:
    x_train, y_train, x_test, y_test = tfds_source.load(self.tfds_name, self.args["data-dir"], self.download_url,
                                                        self._hint())
    return Data(x_train, y_train, x_test, y_test, self.num_classes, tuple(self.input_shape))


class IdxTfdsExperiment(TfdsExperiment):
  """A tfds experiment (MNIST-like) whose data can also come from the four IDX files in `idx-dir`."""

  params: ClassVar[Mapping[str, Any]] = {**TfdsExperiment.params, "idx-dir": None}

  def __init__(self, **args: Any):
    super().__init__(**args)
    if self.args["idx-dir"] is not None and self.args["data-dir"] is not None:
      raise ValueError(f"experiment {self.name}: give either idx-dir (IDX files) or data-dir (tensorflow-datasets "
                       f"directory), not both")

  def _hint(self) -> str:
    return f"pass idx-dir:PATH to a folder holding the four IDX files ({', '.join(idx.FILES)}, raw or .gz)"

  def _load(self) -> Data:
    if self.args["idx-dir"] is None:
      return super()._load()
    x_train, y_train, x_test, y_test = idx.load_idx_dir(self.args["idx-dir"])
    # IDX images are (N, 28, 28); the models take (28, 28, 1) like tfds gives.
    return Data(x_train[..., None], y_train, x_test[..., None], y_test, self.num_classes, tuple(self.input_shape))
