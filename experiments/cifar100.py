"""CIFAR-100 (fine labels) with ResNet-20, via tensorflow-datasets."""

from __future__ import annotations

from experiments import TfdsExperiment, register


@register
class Cifar100(TfdsExperiment):
  """CIFAR-100 (Krizhevsky, 2009): 50,000 train / 10,000 test, 32x32x3, 100 fine classes."""

  name = "cifar100"
  description = "CIFAR-100 with ResNet-20"
  input_shape = (32, 32, 3)
  num_classes = 100
  params = {**TfdsExperiment.params, "model": "resnet20", "batch-size": 32}
  tfds_name = "cifar100"
  download_url = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
