"""The in-memory arrays of a classification dataset, checked once when made."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
  """Train and test arrays: images (N, *input_shape) as uint8 in [0, 255] or float32 in [0, 1], int labels (N,)."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  input_shape: tuple[int, ...]

  def __post_init__(self) -> None:
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
        or self.num_classes < 2:
      raise ValueError(f"Data needs num_classes >= 2 as an int, got {self.num_classes!r}")
    object.__setattr__(self, "num_classes", int(self.num_classes))
    object.__setattr__(self, "input_shape", tuple(int(size) for size in self.input_shape))
    for split in ("train", "test"):
      x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
      if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.float32):
        raise ValueError(f"Data: x_{split} must be a uint8 or float32 numpy array, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
      if x.shape[1:] != self.input_shape:
        raise ValueError(f"Data: x_{split} has examples of shape {x.shape[1:]}, expected input_shape "
                         f"{self.input_shape}")
      if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"Data: y_{split} must be a 1-D integer numpy array, got "
                         f"{getattr(y, 'shape', type(y).__name__)} {getattr(y, 'dtype', '')}")
      if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"Data: {split} split needs as many labels as images (and at least one), got "
                         f"{len(x)} images and {len(y)} labels")
      if y.min() < 0 or y.max() >= self.num_classes:
        raise ValueError(f"Data: y_{split} has labels in [{y.min()}, {y.max()}], expected [0, {self.num_classes})")
      # One label dtype everywhere (IDX gives uint8, tfds int64).
      object.__setattr__(self, f"y_{split}", y.astype(np.int64, copy=False))
