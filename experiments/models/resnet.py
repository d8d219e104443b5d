"""Residual networks: ResNet-18 (ImageNet-style, adapted to 32x32) and ResNet-20 (CIFAR-style).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Both use basic blocks (two 3x3 convolutions) with BatchNorm; a shortcut that
changes shape is a strided 1x1 convolution + BatchNorm (the paper's option B;
its CIFAR networks used zero-padding, option A).
"""

from __future__ import annotations

from typing import Sequence

import keras

from experiments.models import Architecture, register


def _conv_bn(x: keras.KerasTensor, filters: int, kernel: int, strides: int, name: str) -> keras.KerasTensor:
  x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
  return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _basic_block(x: keras.KerasTensor, filters: int, strides: int, name: str) -> keras.KerasTensor:
  shortcut = x
  if strides != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut")
  y = keras.layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, filters, 3, strides, f"{name}_1"))
  y = _conv_bn(y, filters, 3, 1, f"{name}_2")
  return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([y, shortcut]))


def _resnet(inputs: keras.KerasTensor, num_classes: int, stem: int, widths: Sequence[int],
            blocks: int | Sequence[int]) -> keras.KerasTensor:
  counts = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
  # 3x3 stride-1 stem, no max pooling: the CIFAR adaptation of the 7x7/2 + pool ImageNet stem.
  x = keras.layers.ReLU(name="stem_relu")(_conv_bn(inputs, stem, 3, 1, "stem"))
  for stage, (width, count) in enumerate(zip(widths, counts)):
    for block in range(count):
      strides = 2 if stage > 0 and block == 0 else 1
      x = _basic_block(x, width, strides, f"stage{stage + 1}_block{block + 1}")
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.layers.Dense(num_classes, name="logits")(x)


@register
class ResNet18(Architecture):
  """ResNet-18: stages of 2 basic blocks at 64, 128, 256, 512 filters, 3x3 stem (11M parameters)."""

  name = "resnet18"
  reference = "He, Zhang, Ren, Sun, \"Deep Residual Learning for Image Recognition\", CVPR 2016"
  min_size = 1

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    return _resnet(inputs, num_classes, stem=64, widths=(64, 128, 256, 512), blocks=2)


@register
class ResNet20(Architecture):
  """ResNet-20 of the paper's CIFAR-10 section: 3 stages of 3 basic blocks at 16, 32, 64 filters (0.27M parameters)."""

  name = "resnet20"
  reference = "He, Zhang, Ren, Sun, \"Deep Residual Learning for Image Recognition\", CVPR 2016, section 4.2"
  min_size = 1

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    return _resnet(inputs, num_classes, stem=16, widths=(16, 32, 64), blocks=3)
