"""Centered clipping, with a center that carries over between steps."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aggregathor import gars, ops


@gars.register
class CenteredClipping(gars.Rule):
  """Iterated clipping of the gradients around a center kept from the previous step.

  Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
  Optimization", ICML 2021. Each of the `iterations` steps (L in the paper) sets

      v <- v + (1/n) sum_i clip_tau(x_i - v),   clip_tau(z) = z min(1, tau / ||z||)

  and the final v is both the output and the start of the next call: the
  center is per-instance state (a `tf.Variable` created on the first call,
  zeros initially, so the first call clips around the origin). `reset()` sets
  it back to zeros; a new model (another d or dtype) needs a fresh instance,
  `gars.get("centered-clipping")`. The paper pairs the rule with worker
  momentum, which is the caller's business.

  `tau` is the clipping radius. The paper's analysis picks it from the honest
  gradients' variance; the default 10.0 is a plain default, not a value from
  the paper: set it to a few times the honest gradients' spread around their
  mean. `iterations` (L) defaults to 1.

  Each step moves v by at most tau, whatever the inputs. A row holding NaN or
  ±inf contributes zero (as if it sat on v); so does a finite row whose
  difference to v overflows the dtype. Needs a Byzantine minority, n >= 2f + 1;
  the paper's guarantee further assumes a small Byzantine fraction and a
  well-chosen tau.
  """

  name = "centered-clipping"
  reference = "Karimireddy, He, Jaggi, ICML 2021, arXiv:2012.10333"
  params = {"tau": 10.0, "iterations": 1}

  def __init__(self) -> None:
    self._center: tf.Variable | None = None

  @property
  def center(self) -> tf.Tensor | None:
    """The current center (None before the first call)."""
    return None if self._center is None else tf.convert_to_tensor(self._center)

  def reset(self) -> None:
    """Sets the center back to zeros, as before the first call."""
    if self._center is not None:
      self._center.assign(tf.zeros_like(self._center))

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    self._center_variable(d, dtype)

  def variables(self) -> dict[str, tf.Variable]:
    return {} if self._center is None else {"center": self._center}

  def _check(self, n: int, f: int, tau: float, iterations: int) -> None:
    gars.check_positive_float(self.name, "tau", tau)
    gars.check_positive_int(self.name, "iterations", iterations)
    if n < 2 * f + 1:
      raise ValueError(f"centered-clipping needs n >= 2f+1, got n={n}, f={f}")

  def _center_variable(self, d: int, dtype: tf.DType) -> tf.Variable:
    if self._center is None:
      # Lifted out of any tf.function being traced, so a first call inside one works.
      with tf.init_scope():
        self._center = tf.Variable(tf.zeros([d], dtype), trainable=False, name="centered_clipping_center")
    elif self._center.shape != (d,) or self._center.dtype != dtype:
      raise ValueError(f"centered-clipping keeps its center from its first call, of shape ({self._center.shape[0]},) "
                       f"and dtype {self._center.dtype.name}; got gradients of d={d}, dtype {dtype.name}; "
                       f"use a fresh instance, gars.get('centered-clipping'), for another model")
    return self._center

  def _aggregate(self, gradients: tf.Tensor, f: int, tau: float, iterations: int) -> tf.Tensor:
    n, d = gradients.shape
    variable = self._center_variable(d, gradients.dtype)
    dtype = gradients.dtype
    finite = ops.finite_rows(gradients)
    points = tf.cond(tf.reduce_all(finite), lambda: gradients,
                     lambda: tf.math.multiply_no_nan(gradients, tf.cast(finite, dtype)[:, None]))
    tau = tf.constant(tau, dtype)
    # Below this norm, tau / norm is a normal number (CPUs flush subnormals to zero).
    plain_limit = tf.constant(np.sqrt(np.finfo(dtype.as_numpy_dtype).max), dtype)

    def body(center: tf.Tensor) -> tf.Tensor:
      differences = points - center[None]
      norms = ops.row_norms(differences)  # +inf where the difference itself overflowed

      def plain() -> tf.Tensor:
        # tau / 0 = inf -> factor 1.
        factors = tf.where(finite, tf.minimum(tf.ones_like(norms), tau / norms), tf.zeros_like(norms))
        return tf.linalg.matvec(differences, factors, transpose_a=True)

      def huge() -> tf.Tensor:
        # Unit rows times their clipped length; an overflowed row (norm +inf) contributes 0, not 0 * inf.
        usable = tf.logical_and(finite, tf.math.is_finite(norms))
        units = tf.math.divide_no_nan(differences, tf.where(usable, norms, tf.zeros_like(norms))[:, None])
        lengths = tf.where(usable, tf.minimum(norms, tau), tf.zeros_like(norms))
        return tf.reduce_sum(tf.math.multiply_no_nan(units, lengths[:, None]), axis=0)

      total = tf.cond(tf.reduce_all(norms < plain_limit), plain, huge)
      return center + total / n

    # Unrolled, the count being fixed: no loop for TensorFlow's executor to test at each iteration.
    center = variable.read_value()
    for _ in range(iterations):
      center = body(center)
    variable.assign(center)
    return center
