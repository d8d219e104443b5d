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
    scores = krum_scores(ops.pairwise_squared_distances(gradients), f)
    kept = ops.indices_of_smallest(scores, m)
    aggregated = _mean_of_rows_at(gradients, kept, tf.constant(m, gradients.dtype))
    return aggregated, ops.selection_mask(kept, n, gradients.dtype)


@ops.fused
def _mean_of_rows_at(gradients: tf.Tensor, kept: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  # Summing the kept rows (rather than a masked matmul) keeps a dropped NaN row out of the sum;
  # row by row, so that XLA reads them in place in one pass instead of gathering a copy.
  return ops.sum_of_rows(ops.rows_at(gradients, kept)) / count
