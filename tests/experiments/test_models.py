"""Model architectures: output shapes on their datasets' inputs, sizes, and input checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from experiments import models


def test_names():
  assert models.names() == ["cifarnet", "lenet", "mlp", "resnet18", "resnet20", "vgg11"]


@pytest.mark.parametrize("name, shape, classes", [
    ("mlp", (28, 28, 1), 10), ("mlp", (8, 8, 1), 10), ("lenet", (28, 28, 1), 10), ("cifarnet", (32, 32, 3), 10),
    ("resnet18", (32, 32, 3), 10), ("resnet20", (32, 32, 3), 100), ("vgg11", (32, 32, 3), 10),
    ("vgg11", (28, 28, 1), 10),
])
def test_forward_pass_gives_logits_of_the_right_shape(name, shape, classes):
  model = models.get(name, shape, classes)
  assert model.input_shape == (None, *shape) and model.output_shape == (None, classes)
  logits = model(np.random.default_rng(0).random((2, *shape), dtype=np.float32), training=False)
  assert logits.shape == (2, classes)
  assert model.layers[-1].activation is keras.activations.linear  # logits, no softmax


def test_mlp_is_aggregathor_784_100_10():
  model = models.get("mlp", (28, 28, 1), 10)
  assert model.count_params() == 784 * 100 + 100 + 100 * 10 + 10


def test_lenet_size_on_mnist():
  # conv1 6*(25+1), conv2 16*(6*25+1); 28 -> pool 14 -> conv 10 -> pool 5, so 5*5*16 = 400 features;
  # fc 400-120-84-10.
  expected = 6 * 26 + 16 * 151 + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
  assert models.get("lenet", (28, 28, 1), 10).count_params() == expected


def test_resnet20_size():
  def conv_bn(k, cin, cout):  # no conv bias; BatchNorm holds 4 vectors (2 trainable, 2 statistics)
    return k * k * cin * cout + 4 * cout
  stem = conv_bn(3, 3, 16)
  stage1 = 6 * conv_bn(3, 16, 16)
  stage2 = conv_bn(3, 16, 32) + conv_bn(1, 16, 32) + 5 * conv_bn(3, 32, 32)
  stage3 = conv_bn(3, 32, 64) + conv_bn(1, 32, 64) + 5 * conv_bn(3, 64, 64)
  assert models.get("resnet20", (32, 32, 3), 10).count_params() == stem + stage1 + stage2 + stage3 + 64 * 10 + 10


@pytest.mark.parametrize("name", ["mlp", "lenet", "cifarnet"])
def test_small_models_have_no_batchnorm(name):
  model = models.get(name, (32, 32, 3), 10)
  assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize("name, shape, classes, match", [
    ("lenet", (8, 8, 1), 10, "at least 12x12, got 8x8"),
    ("cifarnet", (28, 28), 10, r"\(height, width, channels\)"),
    ("mlp", (28, 0), 10, "positive ints"),
    ("mlp", (4,), 1, "num_classes must be an int >= 2"),
    ("alexnet", (32, 32, 3), 10, "unknown model 'alexnet'"),
])
def test_bad_inputs(name, shape, classes, match):
  with pytest.raises(ValueError, match=match):
    models.get(name, shape, classes)


def test_each_call_gives_fresh_weights():
  first, second = models.get("mlp", (4,), 2), models.get("mlp", (4,), 2)
  assert first.weights[0] is not second.weights[0]
