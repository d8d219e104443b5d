"""Tensor helpers shared by the rules and attacks, all vectorised over the (n, d) matrix."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import tensorflow as tf

Gradients = Union[tf.Tensor, np.ndarray, Sequence[tf.Tensor]]

FLOAT_DTYPES = (tf.float32, tf.float64)


def as_matrix(gradients: Gradients, name: str = "gradients") -> tf.Tensor:
  """Returns `gradients` as one (n, d) float tensor with static n and d.

  Accepts an (n, d) tensor or array, or a list of n tensors of shape (d,).
  Raises `ValueError` saying what was expected for any other input.
  """
  if isinstance(gradients, (list, tuple)):
    if not gradients:
      raise ValueError(f"expected a non-empty list of {name}, got an empty {type(gradients).__name__}")
    rows = [tf.convert_to_tensor(row) for row in gradients]
    dtypes = sorted({row.dtype.name for row in rows})
    if len(dtypes) > 1:
      raise ValueError(f"expected {name} of a single float dtype, got mixed dtypes {dtypes}")
    shapes = {tuple(row.shape.as_list()) if row.shape.rank is not None else None for row in rows}
    if len(shapes) > 1 or any(shape is None or len(shape) != 1 for shape in shapes):
      raise ValueError(f"expected each of the {name} to be a vector of the same shape (d,), got shapes "
                       f"{sorted(str(s) for s in shapes)}")
    matrix = tf.stack(rows)
  else:
    try:
      matrix = tf.convert_to_tensor(gradients)
    except (TypeError, ValueError) as error:
      raise ValueError(f"expected {name} as an (n, d) tensor or a list of (d,) tensors, got {type(gradients).__name__}") from error
  if matrix.dtype not in FLOAT_DTYPES:
    raise ValueError(f"expected {name} of dtype float32 or float64, got {matrix.dtype.name}")
  if matrix.shape.rank != 2:
    raise ValueError(f"expected {name} of shape (n, d), got shape {matrix.shape}")
  n, d = matrix.shape
  if n is None or d is None:
    raise ValueError(f"expected {name} with a static shape (n, d), got {matrix.shape}")
  if n < 1 or d < 1:
    raise ValueError(f"expected at least one gradient of at least one coordinate, got shape {matrix.shape}")
  return matrix


def check_f(f: object, n: int | None = None) -> int:
  """Validates a number of Byzantine workers."""
  if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
    raise ValueError(f"expected f, the number of Byzantine workers, as an int, got {f!r}")
  if f < 0:
    raise ValueError(f"expected f >= 0 Byzantine workers, got f={f}")
  if n is not None and f > n:
    raise ValueError(f"expected f <= n, got n={n}, f={f}")
  return int(f)


def finite_or_inf(x: tf.Tensor) -> tf.Tensor:
  """Replaces NaN and ±inf by +inf, so that non-finite values sort past all others."""
  return tf.where(tf.math.is_finite(x), x, tf.constant(np.inf, x.dtype))


def finite_rows(gradients: tf.Tensor) -> tf.Tensor:
  """(n,) bool: whether every coordinate of each row is finite."""
  return tf.reduce_all(tf.math.is_finite(gradients), axis=1)


def squared_norms(gradients: tf.Tensor) -> tf.Tensor:
  """(n,) squared L2 norms, +inf for a row holding a non-finite value."""
  return finite_or_inf(tf.reduce_sum(tf.square(gradients), axis=1))


def pairwise_squared_distances(gradients: tf.Tensor) -> tf.Tensor:
  """(n, n) squared L2 distances from one Gram product; +inf for any non-finite distance.

  ||x - y||² = ||x||² + ||y||² - 2<x, y>, clamped at zero against round-off; the
  diagonal is exactly zero.
  """
  gram = tf.matmul(gradients, gradients, transpose_b=True)
  norms = tf.linalg.diag_part(gram)
  distances = tf.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0)
  distances = finite_or_inf(distances)
  return tf.linalg.set_diag(distances, tf.zeros_like(norms))


def sum_of_smallest(values: tf.Tensor, k: int) -> tf.Tensor:
  """Per row, the sum of the k smallest values (0 when k <= 0)."""
  if k <= 0:
    return tf.zeros(tf.shape(values)[:-1], values.dtype)
  smallest = -tf.math.top_k(-values, k=k, sorted=False).values
  return tf.reduce_sum(smallest, axis=-1)


def indices_of_smallest(values: tf.Tensor, k: int) -> tf.Tensor:
  """The indices of the k smallest values of a vector, smallest first (ties by lower index)."""
  return tf.math.top_k(-values, k=k, sorted=True).indices


def selection_mask(indices: tf.Tensor, n: int, dtype: tf.DType) -> tf.Tensor:
  """(n,) vector: 1 at each index in `indices`, else 0."""
  return tf.reduce_sum(tf.one_hot(indices, n, dtype=dtype), axis=0)


def sort_coordinates(gradients: tf.Tensor) -> tf.Tensor:
  """Sorts each coordinate (column) ascending across the n rows; non-finite values last."""
  return tf.sort(finite_or_inf(gradients), axis=0)


def median_of_sorted(sorted_gradients: tf.Tensor) -> tf.Tensor:
  """Coordinate-wise median of column-sorted rows: the mean of the two middle ones when n is even."""
  n = sorted_gradients.shape[0]
  upper = sorted_gradients[n // 2]
  if n % 2:
    return upper
  return (sorted_gradients[n // 2 - 1] + upper) / 2


def mean_of_closest_sorted(sorted_gradients: tf.Tensor, center: tf.Tensor, k: int) -> tf.Tensor:
  """Per coordinate, the mean of the k values closest to `center`, from column-sorted rows.

  The k values closest to a point form a contiguous window of the sorted column:
  each of the n-k+1 windows costs the farther of its two ends from the center, and
  the cheapest window is summed through a row mask (no prefix sums, which would
  cancel catastrophically next to a huge Byzantine value). All ops are row-wise,
  so the work stays O(n d) after the sort. Windows holding a non-finite value cost
  +inf and are never chosen while at most n-k values are non-finite.
  """
  n = sorted_gradients.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f"expected 1 <= k <= n values to average, got k={k}, n={n}")
  if k == n:
    return tf.reduce_mean(sorted_gradients, axis=0)
  lows = sorted_gradients[: n - k + 1]
  highs = sorted_gradients[k - 1:]
  costs = tf.maximum(center[None] - lows, highs - center[None])
  costs = tf.where(tf.math.is_nan(costs), tf.constant(np.inf, costs.dtype), costs)
  start = tf.argmin(costs, axis=0, output_type=tf.int32)[None]
  rows = tf.range(n, dtype=tf.int32)[:, None]
  in_window = tf.logical_and(rows >= start, rows < start + k)
  return tf.reduce_sum(tf.where(in_window, sorted_gradients, tf.zeros_like(sorted_gradients)), axis=0) / k


def row_norms(gradients: tf.Tensor) -> tf.Tensor:
  """(n,) L2 norms of the rows, without spurious overflow; +inf for a row holding a non-finite value.

  The plain sqrt(sum(x²)) overflows to +inf once |x| passes about sqrt(max) (1e19
  in float32), which a Byzantine row easily does. Only when that happens are the
  norms recomputed with each row scaled by its largest magnitude, so the common
  case stays one pass.
  """
  squares = tf.einsum("ij,ij->i", gradients, gradients)  # no (n, d) temporary, unlike sum(square(x))

  def rescaled() -> tf.Tensor:
    largest = tf.reduce_max(tf.abs(gradients), axis=1)
    scale = tf.where(largest > 0, largest, tf.ones_like(largest))
    norms = scale * tf.sqrt(tf.reduce_sum(tf.square(gradients / scale[:, None]), axis=1))
    return finite_or_inf(tf.where(tf.math.is_finite(largest), norms, tf.constant(np.inf, norms.dtype)))

  return tf.cond(tf.reduce_all(tf.math.is_finite(squares)), lambda: tf.sqrt(squares), rescaled)
