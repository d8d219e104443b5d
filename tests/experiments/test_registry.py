"""The experiment registry and the key:value argument typing."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import experiments
from experiments import parse_args, split_pairs


def test_names():
  assert experiments.names() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist", "svhn"]


def test_unknown_experiment_suggests_a_close_name():
  with pytest.raises(ValueError, match="did you mean 'mnist'"):
    experiments.get("mnits")


def test_defaults():
  expected = {"mnist": "mlp", "fashion-mnist": "lenet", "cifar10": "cifarnet", "cifar100": "resnet20",
              "svhn": "cifarnet", "digits": "mlp"}
  for name, model in expected.items():
    experiment = experiments.get(name)
    assert experiment.args["model"] == model
    assert experiment.args["batch-size"] >= 1 and experiment.args["data-dir"] is None
  assert experiments.get("mnist").args["idx-dir"] is None
  assert "idx-dir" not in experiments.get("cifar10").params


def test_unknown_argument_lists_the_accepted_ones():
  with pytest.raises(ValueError) as error:
    experiments.get("cifar10", **{"idx-dir": "/x"})
  message = str(error.value)
  assert "idx-dir" in message and "batch-size, data-dir, eval-batch-size, model" in message


def test_string_values_are_typed_by_the_defaults():
  experiment = experiments.get("mnist", **{"batch-size": "64", "alpha": "0.5", "idx-dir": "/a/b"})
  assert experiment.args["batch-size"] == 64 and isinstance(experiment.args["batch-size"], int)
  assert experiment.args["alpha"] == 0.5 and experiment.args["idx-dir"] == "/a/b"
  assert experiments.get("mnist", alpha="none").args["alpha"] is None


@pytest.mark.parametrize("args, match", [
    ({"batch-size": "abc"}, "batch-size expects an integer, got 'abc'"),
    ({"batch-size": "1.5"}, "batch-size expects an integer"),
    ({"batch-size": True}, "batch-size expects an integer"),
    ({"alpha": "x"}, "alpha expects a number"),
    ({"batch-size": "0"}, "batch-size must be >= 1"),
    ({"alpha": "-1"}, "alpha must be a positive number"),
    ({"model": "resnet-18"}, "unknown model 'resnet-18'"),
    ({"model": "lenet"}, "lenet needs images of at least 12x12, got 8x8"),
])
def test_bad_values_name_the_key_and_the_expected_type(args, match):
  with pytest.raises(ValueError, match=match):
    experiments.get("digits", **args)


def test_idx_dir_and_data_dir_exclude_each_other():
  with pytest.raises(ValueError, match="either idx-dir .* or data-dir"):
    experiments.get("fashion-mnist", **{"idx-dir": "/a", "data-dir": "/b"})


def test_parse_args_from_pairs_splits_at_the_first_colon():
  params = {"idx-dir": None, "lr": 0.1, "steps": 10, "nesterov": False, "name": "x"}
  parsed = parse_args(params, ["idx-dir:C:/data:x", "lr:1", "steps: 3", "nesterov:yes", "name:a:b"])
  assert parsed == {"idx-dir": "C:/data:x", "lr": 1.0, "steps": 3, "nesterov": True, "name": "a:b"}
  assert isinstance(parsed["lr"], float)
  assert parse_args(params, []) == {}  # only what was given; the caller merges defaults
  assert parse_args(params, {"nesterov": "OFF", "lr": 2}) == {"nesterov": False, "lr": 2.0}


def test_parse_args_errors():
  params = {"flag": False, "n": 1}
  with pytest.raises(ValueError, match="flag expects a boolean"):
    parse_args(params, ["flag:maybe"])
  with pytest.raises(ValueError, match="expected 'key:value'"):
    parse_args(params, ["n=3"])
  with pytest.raises(ValueError, match="'n' is given twice"):
    split_pairs(["n:1", "n:2"])
  with pytest.raises(ValueError, match="unknown argument.*zz; accepted: flag, n"):
    parse_args(params, {"zz": 1}, what="rule krum")
  with pytest.raises(ValueError, match="single string"):
    parse_args(params, "n:1")
  with pytest.raises(ValueError, match="rule krum: n expects an integer"):
    parse_args(params, ["n:x"], what="rule krum")


def test_loss_is_cross_entropy_on_logits_and_metrics():
  experiment = experiments.get("digits")
  loss = experiment.loss()(np.array([0]), np.array([[2.0, 0.0]], dtype=np.float32))
  # -log softmax([2, 0])[0] = log(1 + e^-2); read as probabilities, [2, 0] would give ~0.
  assert math.isclose(float(loss), math.log(1 + math.exp(-2)), rel_tol=1e-5)
  assert experiment.metrics() == ["sparse_categorical_accuracy"]
  model = experiment.build_model()
  assert isinstance(model, keras.Model) and model.output_shape == (None, 10) and not model.compiled


def test_repr_shows_the_changed_arguments():
  assert repr(experiments.get("digits")) == "experiments.get('digits')"
  assert repr(experiments.get("digits", **{"batch-size": "8"})) == "experiments.get('digits', **{'batch-size': 8})"
