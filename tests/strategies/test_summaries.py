"""strategies.summaries: the selection heatmap TensorBoard shows."""

from __future__ import annotations

import numpy as np

from strategies import summaries


def _red_pixels(image: np.ndarray) -> int:
  red, green, blue = (image[..., i].astype(int) for i in range(3))
  return int(np.sum((red > 150) & (green < 110) & (blue < 110)))


def test_the_heatmap_has_axes_and_marks_the_byzantine_rows_in_red():
  kept = np.zeros((7, 30))
  kept[5] = 1  # Krum keeps a Byzantine worker at every step, as in `make run`
  marked = summaries.selection_heatmap(kept, list(range(10, 310, 10)), byzantine=[5, 6])
  plain = summaries.selection_heatmap(kept, list(range(10, 310, 10)), byzantine=[])
  assert marked.dtype == np.uint8 and marked.ndim == 3 and marked.shape[2] == 3
  assert marked.shape[0] > 7 * 6 and marked.shape[1] > 30 * 6  # room for the axes and their labels
  assert _red_pixels(marked) > 20 and _red_pixels(plain) == 0
  assert np.any(np.all(marked > 250, axis=2)) and np.any(np.all(marked < 5, axis=2))  # white kept, black not
