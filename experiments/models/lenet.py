"""LeNet-5, with ReLU and max pooling in place of the original sigmoids and subsampling."""

from __future__ import annotations

import keras

from experiments.models import Architecture, register


@register
class LeNet(Architecture):
  """conv 6@5x5 (same) - pool - conv 16@5x5 (valid) - pool - 120 - 84 - logits; no BatchNorm."""

  name = "lenet"
  reference = ("LeCun, Bottou, Bengio, Haffner, \"Gradient-Based Learning Applied to Document "
               "Recognition\", Proceedings of the IEEE 1998")
  # 'same' first conv, then: H/2 - 4 >= 2 so that the second pooling has a pixel left.
  min_size = 12

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    layers = keras.layers
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    return layers.Dense(num_classes, name="logits")(x)
