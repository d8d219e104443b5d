"""End to end on real MNIST: robust rules keep learning under attack while the average is derailed.

n = 11 workers, the last f = 2 of them Byzantine, the AggregaThor MLP trained with
Keras `fit` under `ByzantineStrategy`. The attacks are scaled so that they
derail the plain average: "a little is enough" with z = 20 (Baruch et al.) and
"fall of empires" with ε = 10 (Xie et al.), which turns the mean around.
"""

import keras
import numpy as np
import pytest

import experiments
import strategies

NB_WORKERS, F = 11, 2
STEPS = 150
ATTACKS = {"little": {"factor": 20.0}, "empire": {"factor": 10.0}}


@pytest.fixture(scope="module")
def mnist(shared_data):
  experiment = experiments.get("mnist", **{"idx-dir": str(shared_data / "mnist"), "batch-size": 32})
  experiment.load()
  return experiment


def _accuracy_after_training(experiment, aggregator: str, attack: str) -> float:
  keras.utils.set_random_seed(1)
  strategy = strategies.ByzantineStrategy(aggregator, NB_WORKERS, F, F, attack, attack_args=ATTACKS[attack])
  with strategy.scope():
    model = experiment.build_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=experiment.loss(), metrics=experiment.metrics())
  model.fit(experiment.train_dataset(NB_WORKERS, seed=1), steps_per_epoch=STEPS, epochs=1, verbose=0)
  data = experiment.load()
  logits = model.predict(data.x_test[:2000].astype(np.float32) / 255.0, batch_size=500, verbose=0)
  return float(np.mean(np.argmax(logits, axis=1) == data.y_test[:2000]))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_average_is_derailed(mnist, attack):
  assert _accuracy_after_training(mnist, "average", attack) < 0.3


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("aggregator", ["krum", "median", "bulyan"])
def test_robust_rules_keep_learning(mnist, aggregator, attack):
  assert _accuracy_after_training(mnist, aggregator, attack) > 0.8
