"""Fashion-MNIST with LeNet, via tensorflow-datasets or the IDX files in `idx-dir`."""

from __future__ import annotations

from experiments import IdxTfdsExperiment, register


@register
class FashionMnist(IdxTfdsExperiment):
  """Fashion-MNIST (Xiao, Rasul, Vollgraf, arXiv:1708.07747, 2017): 60,000 / 10,000 28x28x1 images, 10 classes."""

  name = "fashion-mnist"
  description = "Fashion-MNIST with LeNet"
  input_shape = (28, 28, 1)
  num_classes = 10
  params = {**IdxTfdsExperiment.params, "model": "lenet", "batch-size": 32}
  tfds_name = "fashion_mnist"
  download_url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
