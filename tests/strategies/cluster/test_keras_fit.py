"""A user's own Keras model trained by model.fit on real worker processes (strategies.cluster.RemoteWorkers)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import experiments
import strategies
from strategies.cluster import RemoteWorkers

DIGITS = experiments.get("digits").load()
X = DIGITS.x_train  # (1438, 8, 8, 1) float32: the model flattens it
Y = DIGITS.y_train


def build_model(seed: int = 0, learning_rate: float = 0.1) -> keras.Model:
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4)),
                            keras.layers.Dense(10)])
  model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  return model


def test_fit_with_average_equals_plain_keras_and_runs_again_on_the_same_deployment(make_cluster):
  cluster = make_cluster(3)
  cluster.start_workers()
  workers = RemoteWorkers(str(cluster.spec_path), credentials=str(cluster.credentials), aggregator="average")
  try:
    remote = workers.attach(build_model())
    history = remote.fit(X[:960], Y[:960], batch_size=96, epochs=2, shuffle=False, verbose=0)
    # The average of the three workers' slice gradients is the batch's gradient: the same training as Keras alone.
    local = build_model()
    expected = local.fit(X[:960], Y[:960], batch_size=96, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(remote.get_weights(), local.get_weights(), strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Keras' loss and metrics are the parameter server's own, on the same batches: the same as well.
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(history.history["accuracy"], expected.history["accuracy"], atol=1e-6)

    # Another model on the same deployment: the workers take the new job.
    again = workers.attach(build_model(seed=1))
    again.fit(X[:192], Y[:192], batch_size=96, epochs=1, verbose=0)
    # Errors of the step outside the graph come out of fit as TensorFlow errors carrying their message.
    with pytest.raises(Exception, match="a batch of 2 examples for 3 workers"):
      again.fit(X[:2], Y[:2], batch_size=2, epochs=1, verbose=0)
  finally:
    workers.close()


def test_fit_with_a_byzantine_process_and_a_killed_worker(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers({3: ["--attack", "empire", "--attack-args", "factor:10"]})
  workers = RemoteWorkers(str(cluster.spec_path), credentials=str(cluster.credentials), aggregator="median",
                          nb_decl_byz_workers=1, nb_real_byz_workers=1, step_timeout=3, study_period=20)
  try:
    model = workers.attach(build_model(learning_rate=0.3))
    study = cluster.root / "study.tsv"
    model.fit(X, Y, batch_size=64, epochs=8, verbose=0, callbacks=[strategies.StudyCallback(workers, str(study))])
    assert model.evaluate(DIGITS.x_test, DIGITS.y_test, verbose=0, return_dict=True)["accuracy"] > 0.85
    assert "Byzantine with empire" in (cluster.root / "worker-3.log").read_text()
    # The study sees the Byzantine row as such: the attack's gradient is far from the honest ones.
    header, *rows = study.read_text().splitlines()
    assert len(rows) >= 8 and header.startswith("#")
    # Median with f=1 over 4 workers goes on without one of them ...
    cluster.workers[0].kill()
    model.fit(X[:512], Y[:512], batch_size=128, epochs=1, verbose=0)
    # ... not without two: fit stops with the error that names them.
    cluster.workers[1].kill()
    with pytest.raises(Exception, match=r"needs at most 1 absent") as error:
      model.fit(X[:512], Y[:512], batch_size=128, epochs=1, verbose=0)
    assert f"worker 1 at 127.0.0.1:{cluster.ports[1]}" in str(error.value)
  finally:
    workers.close()


def test_attach_refuses_an_uncompiled_model(make_cluster):
  cluster = make_cluster(1)
  workers = RemoteWorkers(str(cluster.spec_path), credentials=str(cluster.credentials))
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  with pytest.raises(ValueError, match=r"after model.compile"):
    workers.attach(model)
  workers.close()
