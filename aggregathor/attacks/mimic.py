"""Mimic: every Byzantine worker copies one honest worker."""

from __future__ import annotations

import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common


def most_heterogeneous_worker(honest: tf.Tensor) -> tf.Tensor:
  """Index (int32 scalar) of the honest gradient farthest from the mean along the top principal direction.

  Maximises <x_i - mean, v>^2 over i, v the top eigenvector of the honest
  scatter matrix C^T C (C the centred (n_honest, d) matrix). Rather than run a
  power iteration in dimension d, this uses the small (n_honest, n_honest) Gram
  matrix G = C C^T: if u is its top unit eigenvector with eigenvalue lambda,
  then C v = sqrt(lambda) u, so the projections are proportional to u and the
  argmax is that of |u_i|. One Gram product plus an exact eigendecomposition of
  an n_honest-sized matrix; the square makes the arbitrary sign of v irrelevant.
  """
  centred = honest - _common.honest_mean(honest)[None]
  gram = tf.matmul(centred, centred, transpose_b=True)
  _, vectors = tf.linalg.eigh(gram)  # eigenvalues ascending: the top eigenvector is the last column
  return tf.argmax(tf.abs(vectors[:, -1]), output_type=tf.int32)


@attacks.register
class Mimic(attacks.Attack):
  """Every Byzantine gradient is a copy of one honest worker's gradient.

  Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets
  via Bucketing", ICLR 2022: the Byzantine workers over-represent one honest
  worker, which no rule can tell apart from honest behaviour; on heterogeneous
  (non-i.i.d.) data this biases the aggregate towards that worker's data.

  The paper estimates the direction of largest heterogeneity z over a warm-up
  phase and then copies the worker maximising <x_i, z>. This version is
  stateless: at every call it takes z as the top principal direction of the
  current honest gradients and copies the worker maximising <x_i - mean, z>^2
  (see `most_heterogeneous_worker`). Any n and f.

  Args:
    worker: None (default) chooses as above; an int in [0, n_honest) copies
      that honest worker (the paper's fixed-target variant).
  """

  name = "mimic"
  reference = "Karimireddy et al., ICLR 2022, arXiv:2006.09365"
  params = {"worker": None}

  def check(self, n: int, f_real: int, f_decl: int, worker: int | None) -> None:
    if worker is not None:
      _common.check_int(self.name, "worker", worker, minimum=0, maximum=n - f_real - 1)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, worker: int | None) -> tf.Tensor:
    index = most_heterogeneous_worker(honest) if worker is None else worker
    return _common.repeat(tf.gather(honest, index), f_real)
