"""Tests of `strategies.ByzantineStrategy` with Keras `fit/evaluate` and custom training loops."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from strategies import ByzantineStrategy

# A separable binary task: 24 points, global batches of 8 (2 per replica on 4 workers), so 3 steps an epoch.
_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(24, 3)).astype(np.float32)
Y = (X @ np.array([1., -2., .5], np.float32) > 0).astype(np.float32)[:, None]
BATCH = 8
INITIAL = [np.array([[.3], [-.2], [.1]], np.float32), np.array([0.], np.float32)]


def cpus(n: int) -> list[str]:
  return [device.name for device in tf.config.list_logical_devices("CPU")[:n]]


def classifier(strategy: tf.distribute.Strategy) -> keras.Model:
  """A logistic regression from the fixed INITIAL weights, compiled in `strategy`'s scope."""
  with strategy.scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights(INITIAL)
    model.compile(optimizer=keras.optimizers.SGD(.5), loss="binary_crossentropy", metrics=["binary_accuracy"])
  return model


def fit(model: keras.Model, epochs: int = 1, x: np.ndarray = X, y: np.ndarray = Y,
        batch: int = BATCH) -> dict[str, list[float]]:
  return model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0).history


def evaluate(model: keras.Model) -> list[float]:
  return model.evaluate(X, Y, batch_size=BATCH, verbose=0)


@pytest.fixture(scope="module")
def mirrored():
  """The reference: tf.distribute.MirroredStrategy on the same 4 devices, 3 steps of fit."""
  model = classifier(tf.distribute.MirroredStrategy(cpus(4)))
  return {"history": fit(model), "weights": model.get_weights()}


@pytest.fixture(scope="module")
def keras_average():
  strategy = ByzantineStrategy("average", 4, devices=cpus(4))
  model = classifier(strategy)
  return {"strategy": strategy, "history": fit(model), "weights": model.get_weights()}


# (a) Keras fit under "average" is MirroredStrategy's mean all-reduce

def test_keras_average_matches_mirrored(mirrored, keras_average):
  assert not np.allclose(mirrored["weights"][0], INITIAL[0])  # it trained
  for got, expected in zip(keras_average["weights"], mirrored["weights"]):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(keras_average["history"]["loss"], mirrored["history"]["loss"], rtol=1e-5)
  assert keras_average["strategy"].study.step.numpy() == 3  # the 3 steps went through the pipeline


# (d) metrics stay plain sums over the replicas

def test_fit_metrics_are_plain_sums(mirrored, keras_average):
  accuracy = keras_average["history"]["binary_accuracy"]
  assert accuracy == pytest.approx(mirrored["history"]["binary_accuracy"])
  assert 0 < accuracy[0] < 1


def test_evaluate_under_a_robust_rule_is_not_aggregated():
  # Loss and accuracy of the INITIAL weights on all 24 points, as MirroredStrategy (or one device) gives them.
  p = 1 / (1 + np.exp(-(X @ INITIAL[0] + INITIAL[1])))
  loss = -np.mean(Y * np.log(p) + (1 - Y) * np.log(1 - p))
  accuracy = np.mean((p > .5) == Y)
  assert 0 < accuracy < 1
  strategy = ByzantineStrategy("median", 4, 1, devices=cpus(4))
  np.testing.assert_allclose(evaluate(classifier(strategy)), [loss, accuracy], rtol=1e-5)
  assert strategy.study.step is None  # evaluate sent nothing through the rule


@pytest.mark.parametrize("call", ["fit", "evaluate"])
def test_batch_that_does_not_split_over_the_workers_is_a_clear_error(call):
  # Keras reduces the first batch across replicas to build the model; 6 rows split 2, 2, 1, 1 on 4 workers.
  model = classifier(ByzantineStrategy("average", 4, devices=cpus(4)))
  with pytest.raises(ValueError, match=r"batch size that is a multiple of the 4 workers"):
    getattr(model, call)(X, Y, batch_size=6, verbose=0)


# (c) a custom training loop

def test_custom_loop_matches_keras(keras_average):
  strategy = ByzantineStrategy("average", 4, devices=cpus(4))
  with strategy.scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights(INITIAL)
    optimizer = keras.optimizers.SGD(.5)
    optimizer.build(model.trainable_variables)
  batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH))

  @tf.function
  def step(batch):
    def replica_step(x, y):
      with tf.GradientTape() as tape:
        per_example = keras.losses.binary_crossentropy(y, model(x, training=True))
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=BATCH)
      gradients = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(gradients, model.trainable_variables))
      return loss
    return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=batch), axis=None)

  losses = [float(step(batch)) for batch in batches]
  assert len(losses) == 3
  np.testing.assert_allclose(np.mean(losses), keras_average["history"]["loss"][0], rtol=1e-5)
  for got, expected in zip(model.get_weights(), keras_average["weights"]):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def scalar_steps(strategy: ByzantineStrategy, values: list[list[float]]) -> list[float]:
  """Custom loop on w (initially 0) with replica r's loss w * values[step][r]: its gradient is values[step][r].

  Returns w after each step, with SGD at learning rate 1.
  """
  n = strategy.num_replicas_in_sync
  with strategy.scope():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    optimizer = keras.optimizers.SGD(1.)
    optimizer.build(model.trainable_variables)

  @tf.function
  def step(x):
    def replica_step(x):
      with tf.GradientTape() as tape:
        loss = tf.nn.compute_average_loss(model(x)[:, 0], global_batch_size=n)
      optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    strategy.run(replica_step, args=(x,))

  weights = []
  for row in values:
    step(strategy.experimental_distribute_values_from_function(
        lambda context, row=row: tf.constant([[row[context.replica_id_in_sync_group]]], tf.float32)))
    weights.append(float(model.get_weights()[0][0, 0]))
  return weights


@pytest.mark.parametrize("kwargs, expected", [
    # The rule sees each worker's own gradient 1, 2, 3, 100 (the 1/n loss scaling is undone).
    (dict(aggregator="average"), -26.5),
    (dict(aggregator="median", nb_decl_byz_workers=1), -2.5),
    # The last worker's 100 is replaced by the attack's 10: mean of 1, 2, 3, 10.
    (dict(aggregator="average", nb_decl_byz_workers=1, nb_real_byz_workers=1, attack="constant",
          attack_args={"value": 10.}), -4.),
])
def test_custom_loop_rule_sees_each_worker_gradient(kwargs, expected):
  strategy = ByzantineStrategy(nb_workers=4, devices=cpus(4), **kwargs)
  assert scalar_steps(strategy, [[1., 2., 3., 100.]]) == [pytest.approx(expected)]


def test_momentum_at_server_through_the_strategy():
  # Per-worker momentums (beta .5) of 1, 2, 3 then 3, 0, 1: 1, 2, 3 then 3.5, 1, 2.5; medians 2 then 2.5
  # (momentum at the update would give 2 then .5 * 2 + median(3, 0, 1) = 2).
  strategy = ByzantineStrategy("median", 3, 1, devices=cpus(3), momentum=.5, momentum_at="server")
  assert scalar_steps(strategy, [[1., 2., 3.], [3., 0., 1.]]) == [pytest.approx(-2.), pytest.approx(-4.5)]


def test_single_worker_still_goes_through_the_pipeline():
  # With one replica tf.distribute skips the batch reduction; the gradient 3 must still be clipped to .5.
  strategy = ByzantineStrategy("average", 1, devices=cpus(1), clip=.5, study_period=1)
  assert scalar_steps(strategy, [[3.]]) == [pytest.approx(-.5)]
  assert strategy.study.step.numpy() == 1
  assert float(strategy.study.values["sampled/norm"].numpy()) == pytest.approx(3.)


# (b) and (e): attacks under robust rules, and the study

def test_median_survives_nan_attack():
  strategy = ByzantineStrategy("median", 4, 1, 1, "nan", devices=cpus(4))
  model = classifier(strategy)
  losses = fit(model, epochs=4)["loss"]
  assert all(np.isfinite(w).all() for w in model.get_weights())
  assert losses[-1] < losses[0]


def test_average_is_poisoned_by_nan_attack():
  # Shows the attack really reaches the aggregation (the same loop as the tests above, cheaper than fit).
  strategy = ByzantineStrategy("average", 4, 1, 1, "nan", devices=cpus(4))
  assert np.isnan(scalar_steps(strategy, [[1., 2., 3., 4.]])).all()


def test_krum_against_reverse_with_study():
  # 5 workers, global batches of 10: 3 steps an epoch, 2 epochs.
  strategy = ByzantineStrategy("krum", 5, 1, 1, "reverse", devices=cpus(5), study_period=1)
  model = classifier(strategy)
  x, y = np.concatenate([X, X[:6]]), np.concatenate([Y, Y[:6]])
  losses = fit(model, epochs=2, x=x, y=y, batch=10)["loss"]
  assert all(np.isfinite(w).all() for w in model.get_weights())
  assert losses[-1] < losses[0]
  study = strategy.study
  assert study.step.numpy() == 6 and study.recorded_step.numpy() == 6
  counts = study.selection_counts.numpy()
  assert counts.sum() == 6 and counts[4] == 0  # one selection a step, never the Byzantine worker
  np.testing.assert_allclose(study.selection_rates().numpy(), counts / 6)
  # -100 times the honest mean: exactly opposite to it.
  assert float(study.values["cosine/honest-attack"].numpy()) == pytest.approx(-1.)


# (f) bad constructor inputs

def test_bad_constructor_inputs():
  with pytest.raises(ValueError, match="unknown"):
    ByzantineStrategy("no-such-rule", 4)
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=4, f=1")):
    ByzantineStrategy("krum", 4, 1)
  with pytest.raises(ValueError, match=re.escape("at least one worker must be honest")):
    ByzantineStrategy("average", 2, 1, 2, "nan")
  with pytest.raises(ValueError, match=re.escape("expected momentum_at in update, worker, server")):
    ByzantineStrategy("average", 2, momentum=.9, momentum_at="everywhere")
  with pytest.raises(ValueError, match=re.escape("13 workers need one logical device each, found 12 CPU device(s)")):
    ByzantineStrategy("average", 13)


def test_bad_devices():
  devices = cpus(3)
  with pytest.raises(ValueError, match=re.escape("expected 4 distinct worker devices")):
    ByzantineStrategy("average", 4, devices=devices)
  with pytest.raises(ValueError, match=re.escape("expected 3 distinct worker devices")):
    ByzantineStrategy("average", 3, devices=[devices[0], devices[1], devices[0]])
  # The same device under two spellings.
  with pytest.raises(ValueError, match=re.escape("expected 2 distinct worker devices")):
    ByzantineStrategy("average", 2, devices=["/cpu:0", devices[0]])
