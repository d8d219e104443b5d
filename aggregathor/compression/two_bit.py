"""MXNet's 2-bit quantisation with a residual, 16 values to a 32-bit word."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from aggregathor import compression
from aggregathor.compression._base import Payload, State

# Where value i of a word goes, as MXNet lays it out (src/kvstore/gradient_compression-inl.h): byte i // 4
# of the little-endian word, and in that byte the top two bits first (0xc0, 0x30, 0x0c, 0x03).
SHIFTS = np.array([8 * (i // 4) + 6 - 2 * (i % 4) for i in range(16)], np.int64)
PLUS, MINUS = 3, 2  # the codes 11 (+τ) and 10 (−τ); 00 is 0


@compression.register
class TwoBit(compression.Compressor):
  """Each coordinate sends +τ, −τ or 0, and the residual keeps the rest.

  MXNet's 2-bit gradient compression (`gradient_compression-inl.h`), which
  HiPS uses on its party → global push: r ← r + g; where r ≥ τ, send +τ (code
  11) and r ← r − τ; where r ≤ −τ, send −τ (code 10) and r ← r + τ; else send 0
  (code 00). 16 codes fill a 32-bit word in MXNet's layout (`SHIFTS`); the
  threshold τ (`threshold`, default 0.5 as MXNet's; HiPS sets 1e-6) is known to
  both ends. On the wire: ⌈d/16⌉ words, 4·⌈d/16⌉ bytes.
  """

  name = "2bit"
  reference = "MXNet gradient compression (Seide et al.'s 1-bit SGD family)"
  params = {"threshold": 0.5}

  def __init__(self, dimension: int, segments: Sequence[int] | None = None, **args: Any):
    super().__init__(dimension, segments, **args)
    threshold = self.args["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < float("inf"):
      raise ValueError(f"compressor 2bit: threshold must be a finite number > 0, got {threshold!r}")
    self.threshold = float(threshold)
    self.words = -(-dimension // 16)

  def init_state(self, rows: int) -> State:
    return {"residual": tf.zeros([rows, self.dimension])}

  def encode(self, rows: tf.Tensor, state: State) -> tuple[Payload, State]:
    residual = state["residual"] + rows
    tau = tf.constant(self.threshold, residual.dtype)
    plus, minus = residual >= tau, residual <= -tau
    sent = tf.where(plus, tau, tf.where(minus, -tau, tf.zeros_like(residual)))
    codes = tf.where(plus, tf.constant(PLUS, tf.int64), tf.where(minus, tf.constant(MINUS, tf.int64),
                                                                  tf.constant(0, tf.int64)))
    n = rows.shape[0]
    codes = tf.pad(codes, [[0, 0], [0, 16 * self.words - self.dimension]])
    shifted = tf.bitwise.left_shift(tf.reshape(codes, [n, self.words, 16]), tf.constant(SHIFTS))
    words = tf.cast(tf.reduce_sum(shifted, axis=-1), tf.uint32)  # disjoint bits: the sum is the bitwise or
    return {"words": words}, {"residual": residual - sent}

  def decode(self, payload: Payload) -> tf.Tensor:
    words = tf.cast(payload["words"], tf.int64)
    n = words.shape[0]
    codes = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[:, :, None], tf.constant(SHIFTS)), 3)
    codes = tf.reshape(codes, [n, 16 * self.words])[:, :self.dimension]
    tau = tf.constant(self.threshold, tf.float32)
    return tf.where(codes == PLUS, tau, tf.where(codes == MINUS, -tau, tf.zeros_like(tau)))

  @property
  def payload_bytes(self) -> int:
    return 4 * self.words
