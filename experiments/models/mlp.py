"""The multi-layer perceptron of AggregaThor's MNIST experiment: 784-100-10, ReLU."""

from __future__ import annotations

import keras

from experiments.models import Architecture, register

HIDDEN_UNITS = 100


@register
class Mlp(Architecture):
  """Flatten, one hidden layer of 100 ReLU units, then the logits; any input shape (784-100-10 on MNIST)."""

  name = "mlp"
  reference = ("Damaskinos, El Mhamdi, Guerraoui, Guirguis, Rouault, \"AggregaThor: Byzantine Machine "
               "Learning via Robust Gradient Aggregation\", SysML 2019")
  min_size = 0

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    hidden = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    return keras.layers.Dense(num_classes, name="logits")(hidden)
