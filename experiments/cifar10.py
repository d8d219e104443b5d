"""CIFAR-10 with the CifarNet-like CNN of AggregaThor, via tensorflow-datasets."""

from __future__ import annotations

from experiments import TfdsExperiment, register


@register
class Cifar10(TfdsExperiment):
  """CIFAR-10 (Krizhevsky, 2009): 50,000 train / 10,000 test, 32x32x3, 10 classes."""

  name = "cifar10"
  description = "CIFAR-10 with a CifarNet-like CNN"
  input_shape = (32, 32, 3)
  num_classes = 10
  params = {**TfdsExperiment.params, "model": "cifarnet", "batch-size": 32}
  tfds_name = "cifar10"
  download_url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
