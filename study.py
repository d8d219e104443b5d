#!/usr/bin/env python3
"""Tables and plots of runner.py runs: study.py RESULT_DIR... --output DIR.

Each RESULT_DIR is a run's --checkpoint-dir, or a folder holding several (they
are found below it). Runs that differ only in their seed are averaged. It writes
into --output:

  summary.tsv           final and best test accuracy per setting, rule and attack (mean and std over seeds),
                        and the share of steps where the honest variance-to-norm ratio meets the rule's bound
  worst-case.tsv        each rule's worst attack in each setting
  accuracy-*.png|pdf    test accuracy against step, one panel per attack, one line per rule
  loss-*, cosine-*      the training loss, and the cosine between the honest mean and the defense output
  selection-*           how often each worker was kept, Byzantine workers in red
  worst-case-heatmap.*  the worst-case accuracy across attacks, for each rule and setting

  python study.py runs/ --output runs/plots
  python study.py runs/krum runs/median --output plots --compare momentum_at worker update
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from strategies import results as results_lib


def parser() -> argparse.ArgumentParser:
  parsed = argparse.ArgumentParser(prog="study.py", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parsed.add_argument("results", nargs="+", metavar="RESULT_DIR", help="result directories, or folders holding some")
  parsed.add_argument("--output", required=True, help="folder for the tables and plots (created if missing)")
  parsed.add_argument("--compare", nargs=3, metavar=("FIELD", "BETTER", "THAN"),
                      help="also print the share of settings where FIELD=BETTER has a higher worst-case accuracy "
                           "than FIELD=THAN (a configuration field, e.g. momentum_at worker update)")
  return parsed


def run(argv: Sequence[str] | None = None) -> int:
  flags = parser().parse_args(argv)
  try:
    results = results_lib.load_all(flags.results)
  except results_lib.ResultError as error:
    print(f"study.py: error: {error}", file=sys.stderr)
    return 2
  written = results_lib.plot_all(results, flags.output)
  rows = results_lib.summary_rows(results)
  width = max(len(row["rule"]) for row in rows)
  print(f"{len(results)} runs in {len(rows)} groups")
  for row in rows:
    print(f"{row['rule']:<{width}}  {row['attack']:<12} best {row['best-accuracy']:.4f} ± {row['best-accuracy-std']:.4f}"
          f"  final {row['final-accuracy']:.4f}  ({row['setting']}; seeds {row['seeds']})")
  if flags.compare:
    field, better, than = flags.compare
    share, pairs = results_lib.share_improved(results, field, _typed(better), _typed(than))
    print(f"{field}={better} raises the worst-case accuracy over {field}={than} in "
          f"{share:.0%} of {pairs} settings" if pairs else f"no setting ran with both {field}={better} and {than}")
  print(f"Wrote {len(written)} files to {flags.output}")
  return 0


def _typed(text: str):
  """A command-line value as the configuration holds it (numbers and booleans typed)."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return {"true": True, "false": False, "none": None}.get(text.lower(), text)


if __name__ == "__main__":
  sys.exit(run())
