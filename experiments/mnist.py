"""MNIST with AggregaThor's MLP (784-100-10), via tensorflow-datasets or the IDX files in `idx-dir`."""

from __future__ import annotations

from experiments import IdxTfdsExperiment, register


@register
class Mnist(IdxTfdsExperiment):
  """MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 train / 10,000 test, 28x28x1, 10 classes."""

  name = "mnist"
  description = "MNIST with the AggregaThor MLP (784-100-10)"
  input_shape = (28, 28, 1)
  num_classes = 10
  params = {**IdxTfdsExperiment.params, "model": "mlp", "batch-size": 32}
  tfds_name = "mnist"
  download_url = "https://storage.googleapis.com/cvdf-datasets/mnist/"
