"""A CifarNet-like CNN, as in AggregaThor's CIFAR-10 experiment (TF-slim's cifarnet), without LRN."""

from __future__ import annotations

import keras

from experiments.models import Architecture, register


@register
class CifarNet(Architecture):
  """conv 64@5x5 - pool 3/2 - conv 64@5x5 - pool 3/2 - 384 - 192 - logits, ReLU.

  TF-slim's cifarnet also has local response normalisation and dropout; both
  are left out (no per-batch statistics, deterministic forward pass), as is
  BatchNorm, whose batch statistics would mix with Byzantine workers' data.
  """

  name = "cifarnet"
  reference = ("Damaskinos et al., \"AggregaThor: Byzantine Machine Learning via Robust Gradient "
               "Aggregation\", SysML 2019 (CifarNet of TF-slim, after Krizhevsky's cuda-convnet)")
  min_size = 4

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    layers = keras.layers
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(384, activation="relu", name="fc3")(x)
    x = layers.Dense(192, activation="relu", name="fc4")(x)
    return layers.Dense(num_classes, name="logits")(x)
