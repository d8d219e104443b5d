"""Multi-Krum."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import gars, ops
from aggregathor.gars.krum import krum_scores, krum_upper_bound


@gars.register
class MultiKrum(gars.Rule):
  """Multi-Krum: the mean of the m gradients of lowest Krum score.

  Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
  Byzantine Tolerant Gradient Descent", NeurIPS 2017 (Krum and its m-variant);
  El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
  Learning in Byzantium", ICML 2018 (Multi-Krum as used there). Scores are
  Krum's: the sum of the squared L2 distances to the n-f-2 closest other
  gradients. `m` defaults to n-f; 1 <= m <= n. Needs n >= 2f + 3. A gradient
  with a non-finite coordinate scores +inf, so it is kept only when m exceeds
  the number of finite-score gradients.
  """

  name = "multi-krum"
  reference = "El Mhamdi et al., ICML 2018; Blanchard et al., NeurIPS 2017"
  scale_equivariant = True
  params = {"m": None}
  selects = True

  def _check(self, n: int, f: int, m: int | None) -> None:
    if n < 2 * f + 3:
      raise ValueError(f"multi-krum needs n >= 2f+3, got n={n}, f={f}")
    if m is not None:
      gars.check_positive_int(self.name, "m", m, minimum=1, maximum=n)

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    del d
    return krum_upper_bound(n, f)

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int, m: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    n = gradients.shape[0]
    m = n - f if m is None else m
    gram = tf.matmul(gradients, gradients, transpose_b=True)
    return _select_and_average(gradients, gram, f, m, tf.constant(m, gradients.dtype))


@ops.fused
def _select_and_average(gradients: tf.Tensor, gram: tf.Tensor, f: int, m: int,
                        count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  scores = krum_scores(ops.squared_distances_from_gram(gram), f)
  kept = ops.indices_of_smallest(scores, m)
  # Summing the kept rows (rather than a masked matmul) keeps a dropped NaN row out of the sum;
  # row by row, so that XLA reads them in place in one pass instead of gathering a copy.
  aggregated = ops.sum_of_rows(ops.rows_at(gradients, kept)) / count
  return aggregated, ops.selection_mask(kept, gradients.shape[0], gradients.dtype)
