#!/usr/bin/env python3
"""The Distributed Momentum paper's (Fashion-)MNIST grid, run and analysed in one command.

El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient
Stochastic Gradient Descent", ICLR 2021 (see strategies.reproduction for the
grid and its conventions). Runs go into OUTPUT/runs/NAME, several at a time with
--supercharge; finished runs are skipped and interrupted ones resume from their
checkpoints. It ends with the tables and plots of study.py in OUTPUT/plots and
the paper's headline: where an attack costs at least 20 points of top-1 accuracy
with momentum at the update, how often momentum at the workers wins 20 back.

  python reproduce.py --subset smoke --output results-momentum      # 9 runs, ~20 min on 2 cores
  python reproduce.py --subset headline --supercharge 2             # 25 runs: every rule, f=12, one seed
  python reproduce.py --subset full --supercharge 8                 # the paper's 1840 runs
  python reproduce.py --output results-momentum --analyse-only      # tables and plots of what has run
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Sequence

from strategies import reproduction
from strategies import results as results_lib

SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent / "shared" / "data"


def parser() -> argparse.ArgumentParser:
  parsed = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parsed.add_argument("--output", default="results-momentum", help="folder of the runs and the plots")
  parsed.add_argument("--subset", default="smoke", choices=list(reproduction.SUBSETS),
                      help="the part of the grid to run (see strategies.reproduction.SUBSETS); the options below "
                           "narrow it further")
  parsed.add_argument("--data-dir", default=str(SHARED_DATA) if SHARED_DATA.is_dir() else None,
                      help="a folder holding mnist/ and fashion-mnist/ IDX folders; without one, "
                           "tensorflow-datasets downloads the datasets")
  parsed.add_argument("--datasets", nargs="+", choices=reproduction.DATASETS)
  parsed.add_argument("--rules", nargs="+", choices=reproduction.RULES)
  parsed.add_argument("--attacks", nargs="+", choices=list(reproduction.ATTACKS))
  parsed.add_argument("--byzantine", nargs="+", type=int, metavar="F", help="numbers of Byzantine workers f")
  parsed.add_argument("--learning-rates", nargs="+", type=float)
  parsed.add_argument("--nesterov", nargs="+", choices=["off", "on"])
  parsed.add_argument("--momentum-at", nargs="+", choices=["update", "worker"])
  parsed.add_argument("--seeds", nargs="+", type=int)
  parsed.add_argument("--steps", type=int, default=reproduction.STEPS, help="steps per run (the paper: 300)")
  parsed.add_argument("--nb-workers", type=int, default=reproduction.NB_WORKERS, help="n (the paper: 51)")
  parsed.add_argument("--supercharge", type=int, default=1, help="how many runs at a time")
  parsed.add_argument("--analyse-only", action="store_true", help="run nothing: the tables and plots of OUTPUT")
  parsed.add_argument("--list", action="store_true", help="print the runs and their commands, run nothing")
  return parsed


def grid(flags: argparse.Namespace) -> list[reproduction.Run]:
  chosen = dict(reproduction.SUBSETS[flags.subset])
  for name in ("datasets", "rules", "attacks", "byzantine", "learning_rates", "seeds"):
    if getattr(flags, name) is not None:
      chosen[name] = tuple(getattr(flags, name))
  if flags.nesterov is not None:
    chosen["nesterov"] = tuple(value == "on" for value in flags.nesterov)
  if flags.momentum_at is not None:
    chosen["momentum_at"] = tuple(flags.momentum_at)
  data_dirs = {}
  if flags.data_dir:
    data_dirs = {name: str(pathlib.Path(flags.data_dir) / name) for name in reproduction.DATASETS}
  return reproduction.momentum_grid(data_dirs, steps=flags.steps, nb_workers=flags.nb_workers, **chosen)


def run(argv: Sequence[str] | None = None) -> int:
  parsed = parser()
  flags = parsed.parse_args(argv)
  if flags.supercharge < 1:
    parsed.error(f"--supercharge must be at least 1, got {flags.supercharge}")
  if flags.steps < 1:
    parsed.error(f"--steps must be at least 1, got {flags.steps}")
  try:
    runs = grid(flags)
  except ValueError as error:
    parsed.error(str(error))
  output = pathlib.Path(flags.output)
  if flags.list:
    for entry in runs:
      print(entry.name, " ".join(entry.command(output / "runs" / entry.name)))
    print(f"{len(runs)} runs")
    return 0
  if not flags.analyse_only:
    statuses = reproduction.run_all(runs, output / "runs", parallel=flags.supercharge)
    failed = sorted(name for name, status in statuses.items() if status != 0)
    if failed:
      print(f"{len(failed)} runs failed (their logs are in {output / 'runs'}/NAME/log): {', '.join(failed)}",
            file=sys.stderr)
  finished = [output / "runs" / entry.name for entry in runs
              if reproduction.is_finished(output / "runs" / entry.name, entry.steps)]
  if not finished:
    print(f"reproduce.py: error: no finished run in {output / 'runs'}: run without --analyse-only first",
          file=sys.stderr)
    return 2
  results = results_lib.load_all(finished)
  written = results_lib.plot_all(results, output / "plots")
  print(f"\n{len(finished)} of {len(runs)} runs finished; best test accuracy (mean over seeds):")
  for row in results_lib.summary_rows(results):
    print(f"  {row['rule']:<18} {row['attack']:<14} {row['best-accuracy']:.4f}  ({row['setting']})")
  share, pairs = results_lib.share_improved(results, "momentum_at", "worker", "update")
  if pairs:
    print(f"Momentum at the workers raises the worst-case accuracy (across attacks) in {share:.0%} of "
          f"{pairs} rule and setting pairs")
  headline = results_lib.momentum_headline(results)
  print(f"Attacks costing at least 20 points at the update: {headline['effective']} of {headline['cases']}; "
        f"momentum at the workers wins 20 back in {headline['recovered']} of them "
        f"(the paper: in more than 60%); it does better at all in {headline['worker-better']} of {headline['cases']}")
  print(f"Wrote {len(written)} tables and plots to {output / 'plots'}")
  return 0 if len(finished) == len(runs) else 1


if __name__ == "__main__":
  sys.exit(run())
