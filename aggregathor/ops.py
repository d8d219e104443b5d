"""Tensor helpers shared by the rules and attacks, all vectorised over the (n, d) matrix."""

from __future__ import annotations

import functools
import os
from typing import Callable, Sequence, Union

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
  return squared_distances_from_gram(tf.matmul(gradients, gradients, transpose_b=True))


def squared_distances_from_gram(gram: tf.Tensor) -> tf.Tensor:
  """`pairwise_squared_distances` of the rows whose (n, n) Gram product is `gram`."""
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
  """Sorts each coordinate (column) ascending across the n rows; non-finite values last (as +inf).

  Through a sorting network for up to SORTING_NETWORK_MAX_ROWS rows (see `sorted_rows`).
  """
  if gradients.shape[0] > SORTING_NETWORK_MAX_ROWS:
    return tf.sort(finite_or_inf(gradients), axis=0)
  return tf.stack(sorted_rows(gradients))


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


# Coordinate-wise order statistics without a general sort: a sorting network over the n rows.
# tf.sort(axis=0) transposes and runs a per-column TopK on the CPU, about 100x the time to read
# the matrix; a network of elementwise minima and maxima needs no transpose, and compiled with
# XLA (see `fused`) it becomes one pass that keeps each column in registers.

# One network per rule, compiled by XLA into one pass. With XLA:CPU's classic loop emitters and
# LLVM's vectorizer allowed 256 rows (see below), the median of 128 rows (1471 comparators in the
# full network) runs at 2.5x to 4x the time to read them, of 256 rows (3839) at 4.9x for 10^5 and
# 10^6 columns, where tf.sort takes 80x to 180x; compiling 256 rows takes about 13 s. Past 256, tf.sort. A network's sorted rows cannot be materialised for a merge in a
# second pass: as 128 outputs, XLA computes the network once per output (0.7 s for 10^5 columns).
SORTING_NETWORK_MAX_ROWS = 256


# The LLVM loop vectorizer checks at run time that the rows it loads do not overlap what it stores,
# and gives up on a loop that needs more than 128 such checks (its default): a network of 256 rows
# then runs scalar, median of 256 x 1e5 in 94 ms against 31 ms vectorised. The checks run once per
# loop, so allowing more costs nothing per value.
VECTORIZE_MEMORY_CHECK_THRESHOLD = 1024


def _choose_xla_cpu_flags() -> None:
  """Asks XLA:CPU for its classic loop emitters and a vectorizer that takes 256 rows, unless XLA_FLAGS already chooses.

  The fusion emitters, XLA:CPU's default in TF 2.21, break a network past about
  128 rows apart and recompute it: median of 256 rows of 1024 values took 22 s,
  against 5 ms with the classic emitters, and averaged-median of 128 rows of
  10^6, 500 ms against 81 ms. The vectorizer's threshold: see
  VECTORIZE_MEMORY_CHECK_THRESHOLD. XLA reads XLA_FLAGS once, when it first
  compiles in the process, so this is set at import; no public API sets a flag
  later. Set XLA_FLAGS=--xla_cpu_use_fusion_emitters=true to keep the default
  emitters, and any --xla_backend_extra_options to keep LLVM's threshold.
  """
  flags = os.environ.get("XLA_FLAGS", "").split()
  if not any("xla_cpu_use_fusion_emitters" in flag for flag in flags):
    flags.append("--xla_cpu_use_fusion_emitters=false")
  if not any("xla_backend_extra_options" in flag for flag in flags):
    flags.append(f"--xla_backend_extra_options=-vectorize-memory-check-threshold={VECTORIZE_MEMORY_CHECK_THRESHOLD}")
  os.environ["XLA_FLAGS"] = " ".join(flags)


_choose_xla_cpu_flags()
# Past 64 rows, tf.reduce_sum is faster than adding rows in order (average-nan of 256 x 1e6: 212 ms
# against 349 ms unrolled).
COLUMN_SUMS_MAX_ROWS = 64
FUSE_MIN_SIZE = 1 << 16  # n * d below which compiling costs more than it saves


def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
  """The comparators (i, j), i < j, of Batcher's odd-even merge sort of n elements, in order.

  K. E. Batcher, "Sorting networks and their applications", AFIPS Spring Joint
  Computer Conference 1968. Built for the next power of two and pruned of the
  comparators that touch an index >= n, which is exact: the missing elements act
  as +inf, which no comparator moves. O(n log² n) comparators (191 for n = 32).
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"expected a number of rows n >= 1, got {n!r}")
  return _sorting_network(n)


@functools.lru_cache(maxsize=None)
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
  size = 1 << (n - 1).bit_length()
  comparators = []
  merged = 1  # sorted runs of `merged` elements are merged pairwise
  while merged < size:
    step = merged
    while step >= 1:
      for start in range(step % merged, size - step, 2 * step):
        for i in range(start, min(start + step, size - step)):
          # Only within one block of 2 * merged elements being merged.
          if i // (2 * merged) == (i + step) // (2 * merged) and i + step < n:
            comparators.append((i, i + step))
      step //= 2
    merged *= 2
  return tuple(comparators)


def sorted_rows(gradients: tf.Tensor) -> list[tf.Tensor]:
  """The n rows of `sort_coordinates(gradients)`, as a list of (d,) tensors.

  Up to SORTING_NETWORK_MAX_ROWS rows, through `sorting_network(n)`: exact (only
  minima and maxima), and NaN-free because non-finite values are first mapped to
  +inf. A list, not a stacked matrix, so that rules computing a few elementwise
  functions of the sorted rows (a median, a window mean) stay elementwise: under
  XLA, stacking would make each output row recompute the whole network.
  """
  if gradients.shape[0] > SORTING_NETWORK_MAX_ROWS:
    return tf.unstack(tf.sort(finite_or_inf(gradients), axis=0))
  return sort_rows(tf.unstack(gradients))


def sort_rows(rows: Sequence[tf.Tensor]) -> list[tf.Tensor]:
  """`sorted_rows` of the matrix whose rows are `rows`, a list of (d,) tensors (e.g. from `rows_at`)."""
  rows = [finite_or_inf(row) for row in rows]
  if len(rows) > SORTING_NETWORK_MAX_ROWS:
    return tf.unstack(tf.sort(tf.stack(rows), axis=0))
  for i, j in sorting_network(len(rows)):
    rows[i], rows[j] = tf.minimum(rows[i], rows[j]), tf.maximum(rows[i], rows[j])
  return rows


def rows_at(gradients: tf.Tensor, indices: tf.Tensor) -> list[tf.Tensor]:
  """The rows of `gradients` at `indices`, a (k,) int tensor of static length, as a list of (d,) tensors.

  Taken one by one: under XLA each is then read in place by what uses it, where
  `tf.gather(gradients, indices)` would first copy the k rows.
  """
  return [tf.gather(gradients, indices[i]) for i in range(indices.shape[0])]


def sum_of_rows(rows: Sequence[tf.Tensor]) -> tf.Tensor:
  """The sum of (d,) rows, added in order (so that it rounds the same with and without XLA)."""
  if not rows:
    raise ValueError("expected at least one row to sum, got none")
  total = rows[0]
  for row in rows[1:]:
    total = total + row
  return total


def median_of_rows(sorted_list: Sequence[tf.Tensor]) -> tf.Tensor:
  """The coordinate-wise median of the rows of `sorted_rows`: the middle one, or the mean of the two middle ones."""
  n = len(sorted_list)
  if n % 2:
    return sorted_list[n // 2]
  return (sorted_list[n // 2 - 1] + sorted_list[n // 2]) / 2


def sum_of_closest_rows(sorted_list: Sequence[tf.Tensor], center: tf.Tensor, k: int) -> tf.Tensor:
  """Per coordinate, the sum of the k values closest to `center`, from the rows of `sorted_rows`.

  The k values closest to a point form a contiguous window of the sorted column,
  and the window starts at the number of i in [0, n-k) with
  center - s_i > s_{i+k} - center: sliding the window one step, from [i, i+k) to
  [i+1, i+k+1), trades s_i for s_{i+k}, and pays when s_{i+k} is strictly closer.
  Both sides are monotone in i, so the count is where sliding stops paying.
  Exact with repeated values (a repeat never stands in for a closer value), and
  a tie in distance keeps the smaller value. Non-finite values, +inf after the
  sort, are never slid in while the center is finite. Every op is elementwise on
  the rows, so under XLA (see `fused`) it stays one pass; no prefix sums, which
  would cancel catastrophically next to a huge Byzantine value. Left as a sum so
  that the caller divides by k.
  """
  n = len(sorted_list)
  if not 1 <= k <= n:
    raise ValueError(f"expected 1 <= k <= n values to average, got k={k}, n={n}")
  if k == n:
    return sum_of_rows(sorted_list)
  # Counted in the values' dtype (exact: at most n-k), not int32, whose elementwise ops a GPU runs on the host.
  start = sum_of_rows([tf.cast(center - sorted_list[i] > sorted_list[i + k] - center, sorted_list[0].dtype)
                       for i in range(n - k)])
  zero = tf.zeros_like(sorted_list[0])
  # Rows n-k to k-1 are in every window: no mask (the same sum, with fewer ops per coordinate).
  in_window = [value if n - k <= row < k else
               tf.where(tf.logical_and(start <= row, start > row - k), value, zero)
               for row, value in enumerate(sorted_list)]
  return sum_of_rows(in_window)


def fused(function=None, *, max_rows: int | None = None):
  """Decorator: runs `function(gradients, *args)` as one XLA computation (jit_compile=True).

  For an (n, d) `gradients` of at least FUSE_MIN_SIZE values (and at most
  `max_rows` rows, if given); smaller ones run the same ops uncompiled, which
  is faster than compiling them. Works eagerly, inside a `tf.function` (with or
  without jit_compile) and in a tf.distribute replica. Python arguments are
  part of the compiled signature.

  So that both runs round alike, pass divisors as tensors: XLA turns a division
  by a constant into a multiplication by its reciprocal, which can differ by
  1 ulp. And keep divisions at the end: XLA will not copy a division (an
  "expensive" op) into each of several users, so a quotient used by several
  ops splits the computation, each part recomputing what it needs (e.g. the
  whole sorting network per sorted row).
  """
  if function is None:
    return lambda function: fused(function, max_rows=max_rows)
  compiled = tf.function(function, jit_compile=True, autograph=False)

  def call(gradients: tf.Tensor, *args):
    n, d = gradients.shape
    if n * d >= FUSE_MIN_SIZE and (max_rows is None or n <= max_rows):
      return compiled(gradients, *args)
    return function(gradients, *args)

  call.__name__ = getattr(function, "__name__", "fused")
  call.__doc__ = function.__doc__
  return call


def column_sums(elementwise: Callable[[tf.Tensor], tf.Tensor], gradients: tf.Tensor) -> tf.Tensor:
  """The (d,) column sums of `elementwise(gradients)`, for an elementwise function.

  Up to COLUMN_SUMS_MAX_ROWS rows, the function is applied to each row and
  the rows are added in order: all elementwise, so that under XLA (see `fused`)
  it is one pass over `gradients` (XLA's column reductions run at a fraction of
  the read speed, and it would not fuse a function of the matrix into per-row
  slices), rounding the same with and without XLA. Beyond, `tf.reduce_sum`.
  """
  if gradients.shape[0] > COLUMN_SUMS_MAX_ROWS:
    return tf.reduce_sum(elementwise(gradients), axis=0)
  return sum_of_rows([elementwise(row) for row in tf.unstack(gradients)])
