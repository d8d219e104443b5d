"""SVHN (cropped digits) with the CifarNet-like CNN, via tensorflow-datasets."""

from __future__ import annotations

from experiments import TfdsExperiment, register


@register
class Svhn(TfdsExperiment):
  """Street View House Numbers, cropped digits (Netzer et al., NIPS workshop 2011): 73,257 / 26,032 32x32x3, 10 classes.

  The 531,131 'extra' images are not used.
  """

  name = "svhn"
  description = "SVHN (cropped digits) with a CifarNet-like CNN"
  input_shape = (32, 32, 3)
  num_classes = 10
  params = {**TfdsExperiment.params, "model": "cifarnet", "batch-size": 32}
  tfds_name = "svhn_cropped"
  download_url = "http://ufldl.stanford.edu/housenumbers/"
