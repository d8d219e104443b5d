"""Base class of the model architectures."""

from __future__ import annotations

from typing import ClassVar, Sequence

import keras


class Architecture:
  """A model architecture: `build(input_shape, num_classes)` gives a Keras model outputting logits.

  Subclasses set `name`, `reference`, `min_size` (the smallest height/width the
  architecture accepts, 0 when it takes any input rank) and implement `_logits`.
  """

  name: ClassVar[str] = ""
  reference: ClassVar[str] = ""
  # Smallest image height and width; 0 means any input shape (e.g. an MLP flattens it).
  min_size: ClassVar[int] = 1

  @classmethod
  def build(cls, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    shape = cls.check(input_shape, num_classes)
    inputs = keras.Input(shape=shape, name="images")
    return keras.Model(inputs, cls._logits(inputs, num_classes), name=cls.name)

  @classmethod
  def check(cls, input_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """The input shape as a tuple; ValueError if it or num_classes cannot fit the architecture."""
    try:
      shape = tuple(input_shape)
    except TypeError:
      raise ValueError(f"model {cls.name}: input_shape must be a sequence of sizes, got {input_shape!r}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
      raise ValueError(f"model {cls.name}: input_shape must be positive ints (no batch axis), got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
      raise ValueError(f"model {cls.name}: num_classes must be an int >= 2, got {num_classes!r}")
    if cls.min_size:
      if len(shape) != 3:
        raise ValueError(f"model {cls.name} takes images as (height, width, channels), got input_shape {shape}")
      if min(shape[:2]) < cls.min_size:
        raise ValueError(f"model {cls.name} needs images of at least {cls.min_size}x{cls.min_size}, got "
                         f"{shape[0]}x{shape[1]}; pick another model (e.g. model:mlp)")
    return shape

  @classmethod
  def _logits(cls, inputs: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    raise NotImplementedError
