"""A paper's grid of runner.py runs: named, run several at a time, resumed, and skipped once finished.

`momentum_grid` is the MNIST and Fashion-MNIST grid of El-Mhamdi, Guerraoui and
Rouault, "Distributed Momentum for Byzantine-resilient Stochastic Gradient Descent"
(ICLR 2021), as its reproduce.py runs it:

- n = 51 workers, of which f ∈ {24, 12} are Byzantine and declared (Bulyan, which
  needs n ≥ 4f + 3, only at f = 12);
- the MLP 784-100-10, batch 83 per worker, momentum 0.9, L2 1e-4, the honest
  gradients clipped at norm 2, 300 steps, an evaluation every 5 steps;
- learning rate 0.5 or 0.02, Nesterov off or on, momentum at the update or at the
  workers;
- rules krum, median, trimmed-mean, phocas, averaged-median (its meamed) and bulyan;
- attacks `little`, mean − 1.5·σ (our `little` with factor −1.5, as its factor 1.5 with
  negative:True) and `empire`, −0.1·mean (our `empire` with factor 0.1, its factor 1.1);
- seeds 1 to 5, and unattacked baselines averaging over n − f workers.

Two choices differ from its code, to keep the papers' definitions: its `krum` is
Multi-Krum with m = n − f − 2 over non-squared distances, ours keeps Krum's squared
distances (Blanchard et al., NeurIPS 2017) with the same m; its clipping divides a
gradient longer than the bound by its norm (to norm 1), ours scales it to the bound.

A run is finished when its evaluation file reaches the last step. An unfinished
one resumes from its last checkpoint, for the steps it still has to do.

SUBSETS name the parts of the grid that fit on a small machine. Each run of the
paper's setting takes 2.5 to 7 minutes on 2 cores, two at a time (51 workers, 300 steps, an
evaluation every 5), so the whole grid, 1840 runs, takes about 3 days there.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Iterable, Sequence

from strategies import provenance

RULES = ("krum", "median", "trimmed-mean", "phocas", "averaged-median", "bulyan")
ATTACKS = {"little": ("factor:-1.5",), "empire": ("factor:0.1",)}
DATASETS = ("mnist", "fashion-mnist")
NB_WORKERS = 51
BYZANTINE = (24, 12)
LEARNING_RATES = (0.5, 0.02)
STEPS = 300
EVALUATION_DELTA = 5
SEEDS = (1, 2, 3, 4, 5)
ROOT = pathlib.Path(__file__).resolve().parent.parent
# Named parts of the grid, chosen to keep both attacks and both momentum placements (the paper's comparison)
# while cutting the dimensions it reports as secondary: one dataset, f = 12 (where every rule, Bulyan included,
# runs), the small learning rate, no Nesterov, and one seed, then more rules and seeds.
SUBSETS = {
    "smoke": {"datasets": ("mnist",), "rules": ("krum", "median"), "byzantine": (12,), "learning_rates": (0.02,),
              "nesterov": (False,), "seeds": (1,)},  # 9 runs: 18.5 minutes on 2 cores, two at a time
    "headline": {"datasets": ("mnist",), "byzantine": (12,), "learning_rates": (0.02,), "nesterov": (False,),
                 "seeds": (1,)},  # 25 runs, about an hour
    "mnist": {"datasets": ("mnist",), "seeds": (1,)},  # 184 runs, about 8 hours
    "full": {},  # 1840 runs
}


@dataclasses.dataclass(frozen=True)
class Run:
  """One runner.py run of a grid: its directory name and its arguments (without the output flags)."""

  name: str
  args: tuple[str, ...]
  steps: int

  def command(self, directory: pathlib.Path, python: str = sys.executable) -> list[str]:
    """The command line that runs it, or resumes it from its checkpoint for the steps it has left."""
    left = self.steps - last_checkpoint_step(directory)
    return [python, str(ROOT / "runner.py"), *self.args, "--max-steps", str(left), "--checkpoint-dir", str(directory),
            "--checkpoint-delta", str(max(1, self.steps // 6)), "--checkpoint-period", "-1"]


def momentum_grid(data_dirs: dict[str, str], datasets: Sequence[str] = DATASETS, rules: Sequence[str] = RULES,
                  attacks: Sequence[str] = tuple(ATTACKS), byzantine: Sequence[int] = BYZANTINE,
                  learning_rates: Sequence[float] = LEARNING_RATES, nesterov: Sequence[bool] = (False, True),
                  momentum_at: Sequence[str] = ("update", "worker"), seeds: Sequence[int] = SEEDS,
                  steps: int = STEPS, nb_workers: int = NB_WORKERS, baselines: bool = True) -> list[Run]:
  """The Distributed Momentum paper's (Fashion-)MNIST runs, or the subset the arguments keep.

  `data_dirs`: dataset -> the folder of its IDX files (None: tensorflow-datasets downloads it).
  """
  for name in rules:
    if name not in RULES:
      raise ValueError(f"unknown rule {name!r} for this grid: expected some of {', '.join(RULES)}")
  for name in attacks:
    if name not in ATTACKS:
      raise ValueError(f"unknown attack {name!r} for this grid: expected some of {', '.join(ATTACKS)}")
  for name in datasets:
    if name not in DATASETS:
      raise ValueError(f"unknown dataset {name!r} for this grid: expected some of {', '.join(DATASETS)}")
  runs = []
  for dataset, f, lr, accelerated, seed in itertools.product(datasets, byzantine, learning_rates, nesterov, seeds):
    experiment = ["--experiment", dataset, "--experiment-args", "model:mlp", "batch-size:83"]
    if data_dirs.get(dataset):
      experiment.append(f"idx-dir:{data_dirs[dataset]}")
    common = [*experiment, "--seed", str(seed), "--momentum", "0.9", "--l2-regularize", "1e-4",
              "--gradient-clip", "2", "--learning-rate-args", f"initial-rate:{lr}",
              "--evaluation-delta", str(EVALUATION_DELTA), "--evaluation-period", "-1", "--study-period", "1",
              "--summary-period", "-1", "--log-period", "-1"]
    if accelerated:
      common.append("--nesterov")
    tail = f"lr_{lr}" + ("-nesterov" if accelerated else "") + f"-seed_{seed}"
    if baselines:
      runs.append(Run(f"{dataset}-average-n_{nb_workers - f}-{tail}",
                      (*common, "--aggregator", "average", "--nb-workers", str(nb_workers - f)), steps))
    for rule, attack, place in itertools.product(rules, attacks, momentum_at):
      if rule == "bulyan" and nb_workers < 4 * f + 3:
        continue  # Bulyan needs n >= 4f + 3: the paper runs it at f = 12 only
      aggregator = ["--aggregator", "multi-krum", "--aggregator-args", f"m:{nb_workers - f - 2}"] if rule == "krum" \
          else ["--aggregator", rule]
      runs.append(Run(f"{dataset}-{attack}-{rule}-f_{f}-at_{place}-{tail}",
                      (*common, *aggregator, "--nb-workers", str(nb_workers), "--nb-decl-byz-workers", str(f),
                       "--nb-real-byz-workers", str(f), "--attack", attack, "--attack-args", *ATTACKS[attack],
                       "--momentum-at", place), steps))
  return runs


def last_checkpoint_step(directory: pathlib.Path) -> int:
  """The step of the run's latest checkpoint (0 if none), from TensorFlow's `checkpoint` index file."""
  index = directory / "checkpoint"
  if not index.exists():
    return 0
  match = re.search(r'^model_checkpoint_path: ".*?-(\d+)"', index.read_text(encoding="utf-8"), re.MULTILINE)
  return int(match[1]) if match else 0


def is_finished(directory: pathlib.Path, steps: int) -> bool:
  """Whether the run's evaluation file reached its last step."""
  evaluation = directory / "eval"
  if not evaluation.exists() or not provenance.read(directory):
    return False
  lines = evaluation.read_text(encoding="utf-8").splitlines()
  return any(line.split("\t")[1:2] == [str(steps)] for line in lines[-3:])


def run_all(runs: Iterable[Run], directory: str | os.PathLike, parallel: int = 1, python: str = sys.executable,
            threads: int | None = None, log=print) -> dict[str, int]:
  """Runs every unfinished run, `parallel` at a time; returns name -> exit status of those it ran.

  Each run writes into `directory/NAME`, its output into `NAME/log`. `threads` caps
  each run's TensorFlow threads (default: the cores shared among the parallel runs).
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  runs = list(runs)
  pending = [run for run in runs if not is_finished(directory / run.name, run.steps)]
  log(f"{len(runs) - len(pending)} of {len(runs)} runs already finished; {len(pending)} to run, {parallel} at a time")
  threads = threads or max(1, (os.cpu_count() or 1) // parallel)
  environment = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
                 "TF_CPP_MIN_LOG_LEVEL": "2"}
  statuses: dict[str, int] = {}
  running: list[tuple[Run, subprocess.Popen, float]] = []
  try:
    while pending or running:
      while pending and len(running) < parallel:
        run = pending.pop(0)
        target = directory / run.name
        target.mkdir(parents=True, exist_ok=True)
        with open(target / "log", "a", encoding="utf-8") as output:
          process = subprocess.Popen(run.command(target, python), stdout=output, stderr=subprocess.STDOUT,
                                     env=environment, cwd=ROOT)
        running.append((run, process, time.monotonic()))
      time.sleep(0.2)
      for entry in list(running):
        run, process, started = entry
        if process.poll() is None:
          continue
        running.remove(entry)
        statuses[run.name] = process.returncode
        done = len(statuses)
        verdict = "done" if process.returncode == 0 else f"FAILED with status {process.returncode}, see its log"
        log(f"[{done}/{done + len(pending) + len(running)}] {run.name}: {verdict} in {time.monotonic() - started:.0f} s")
  finally:
    for _, process, _ in running:  # interrupted: stop the runs started, they resume next time
      process.terminate()
    for _, process, _ in running:
      try:
        process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        process.kill()
  return statuses
