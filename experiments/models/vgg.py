"""VGG-11 (configuration A), with BatchNorm, adapted to small images."""

from __future__ import annotations

import keras

from experiments.models import Architecture, register

# Configuration A of the paper: filters per 3x3 convolution, "M" for 2x2 max pooling.
CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@register
class Vgg11(Architecture):
  """VGG-11's eight 3x3 conv layers (+ BatchNorm) and five poolings, then a 512-unit layer and the logits.

  The ImageNet classifier (4096-4096) is reduced to one 512-unit layer, as is
  usual for 32x32 inputs where the features end up 1x1x512. Pooling uses 'same'
  padding, so smaller images (e.g. 28x28) work too.
  """

  name = "vgg11"
  reference = ("Simonyan, Zisserman, \"Very Deep Convolutional Networks for Large-Scale Image "
               "Recognition\", ICLR 2015")
  min_size = 1

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    layers = keras.layers
    x = inputs
    conv = pool = 0
    for item in CONFIG_A:
      if item == "M":
        pool += 1
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{pool}")(x)
      else:
        conv += 1
        x = layers.Conv2D(item, 3, padding="same", use_bias=False, name=f"conv{conv}")(x)
        x = layers.ReLU(name=f"relu{conv}")(layers.BatchNormalization(name=f"bn{conv}")(x))
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu", name="fc")(x)
    return layers.Dense(num_classes, name="logits")(x)
