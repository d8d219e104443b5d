#!/usr/bin/env python3
"""Final test accuracy of each robust rule on MNIST under attack, with momentum at the update or at the workers.

n = 11 workers of which the last f = 2 are Byzantine and run "a little is
enough" (Baruch et al., NeurIPS 2019) or "fall of empires" (Xie et al., UAI
2020) with their papers' default factors; the AggregaThor MLP trained for a
fixed number of steps with momentum β at the update or at the workers
(El-Mhamdi, Guerraoui, Rouault, ICLR 2021). Prints one table row per rule.

  python benchmarks/accuracy.py                       # every rule, 300 steps
  python benchmarks/accuracy.py --rules krum median --steps 100
  python benchmarks/accuracy.py --attacks none        # reference: no Byzantine worker
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NB_WORKERS, F = 11, 2
DEFAULT_RULES = ["average", "krum", "multi-krum", "median", "trimmed-mean", "averaged-median", "phocas", "bulyan",
                 "geometric-median", "mda", "cge", "centered-clipping", "nnm>krum"]


def main(argv=None) -> dict[tuple[str, str, str], float]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rules", nargs="*", default=DEFAULT_RULES)
  parser.add_argument("--attacks", nargs="*", default=["little", "empire"],
                      help='attack names; "none" for a reference column without Byzantine workers')
  parser.add_argument("--momentum-at", nargs="*", default=["update", "worker"])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--momentum", type=float, default=0.9)
  parser.add_argument("--learning-rate", type=float, default=0.02)
  parser.add_argument("--batch-size", type=int, default=32, help="per worker")
  parser.add_argument("--idx-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
  flags = parser.parse_args(argv)

  import strategies  # pylint: disable=g-import-not-at-top
  strategies.configure_devices(NB_WORKERS)
  import keras  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top

  # eval-batch-size a multiple of n: Keras reduces the first batch across replicas, which needs equal shares.
  experiment = experiments.get("mnist", **{"idx-dir": flags.idx_dir, "batch-size": flags.batch_size,
                                           "eval-batch-size": 50 * NB_WORKERS})
  experiment.load()
  results = {}
  print(f"MNIST, MLP 784-100-10, n={NB_WORKERS}, f={F} declared and real attackers (none in a \"none\" column), "
        f"{flags.steps} steps, per-worker batch "
        f"{flags.batch_size}, SGD lr {flags.learning_rate}, momentum {flags.momentum}; final test accuracy")
  columns = [(attack, place) for attack in flags.attacks for place in flags.momentum_at]
  print(f"{'rule':<18}" + "".join(f"{attack + '/' + place:>16}" for attack, place in columns))
  for rule in flags.rules:
    row = []
    for attack, place in columns:
      keras.utils.set_random_seed(0)
      attackers, attack_name = (0, None) if attack == "none" else (F, attack)
      strategy = strategies.ByzantineStrategy(rule, NB_WORKERS, F, attackers, attack_name, momentum=flags.momentum,
                                              momentum_at=place)
      with strategy.scope():
        model = experiment.build_model()
        model.compile(optimizer=keras.optimizers.SGD(flags.learning_rate), loss=experiment.loss(),
                      metrics=experiment.metrics())
      started = time.perf_counter()
      model.fit(experiment.train_dataset(NB_WORKERS, seed=0), steps_per_epoch=flags.steps, epochs=1, verbose=0)
      accuracy = model.evaluate(experiment.test_dataset(), verbose=0, return_dict=True)["sparse_categorical_accuracy"]
      results[(rule, attack, place)] = accuracy
      row.append(f"{accuracy:16.4f}")
      print(f"  ({rule}, {attack}, {place}: {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    print(f"{rule:<18}" + "".join(row), flush=True)
  return results


if __name__ == "__main__":
  main()
