"""scikit-learn's bundled 8x8 handwritten digits: no network, no data files; the default experiment."""

from __future__ import annotations

import numpy as np

from experiments import Data, Experiment, register

# Fixed split, independent of the run's seed, so that test accuracies compare across runs.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@register
class Digits(Experiment):
  """1,797 greyscale 8x8 digits (UCI optdigits test set, shipped with scikit-learn), 10 classes.

  Images are (8, 8, 1) float32 in [0, 1] (pixel values 0..16 divided by 16);
  a fixed shuffled split keeps 20% (359 digits) for testing. The default model
  is AggregaThor's MLP on 64 inputs (64-100-10). `data-dir` is accepted and
  unused: the data ships with scikit-learn.
  """

  name = "digits"
  description = "scikit-learn's 8x8 digits (bundled) with the AggregaThor MLP (64-100-10)"
  input_shape = (8, 8, 1)
  num_classes = 10
  params = {**Experiment.params, "model": "mlp", "batch-size": 16, "eval-batch-size": 360}

  def _load(self) -> Data:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    nb_test = int(round(TEST_FRACTION * len(labels)))
    test, train = order[:nb_test], order[nb_test:]
    return Data(images[train], labels[train], images[test], labels[test], self.num_classes, self.input_shape)
