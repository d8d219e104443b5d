"""Keras `fit` over MPI (run under `mpirun -np 4`): ranks 1-3 serve, rank 0 fits with RemoteWorkers(mpi=True).

With the average rule, the mean of the three workers' slice gradients is the batch's gradient: the weights
must be those of plain Keras on the same batches. Prints "fit over MPI matches plain Keras" when they are.
"""

import sys

import keras
import numpy as np

import experiments
from strategies.cluster import RemoteWorkers, mpi


def build_model() -> keras.Model:
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  return model


def main() -> int:
  if mpi.world()[0] != 0:
    return mpi.serve()
  digits = experiments.get("digits").load()
  x, y = digits.x_train[:960], digits.y_train[:960]
  workers = RemoteWorkers(mpi=True, aggregator="average", step_timeout=60)
  try:
    remote = workers.attach(build_model())
    history = remote.fit(x, y, batch_size=96, epochs=2, shuffle=False, verbose=0)
  finally:
    workers.close()
  local = build_model()
  expected = local.fit(x, y, batch_size=96, epochs=2, shuffle=False, verbose=0)
  for got, want in zip(remote.get_weights(), local.get_weights(), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-4)
  print("fit over MPI matches plain Keras; accuracy", history.history["accuracy"][-1], flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
