#!/usr/bin/env python3
"""Accuracy against the number of Byzantine workers q: no redundancy, DETOX and ByzShield (MOLS), and their cost.

K workers (default 15), replication r (default 3), the rule across workers or
files (default median), and q Byzantine workers in each scheme's worst-case set
sending `--attack` (default empire with factor 10). Every scheme trains on the
same total batch per step (`--total-batch`, split evenly over its files or
workers), on MNIST from $AGGREGATHOR_DATA or ../shared/data (the embedded
digits without it). A q the rule cannot tolerate in a scheme (after the vote,
its c_max(q) distorted files) is shown as "-". The cost is the gradients a real
cluster computes per step: K without redundancy, F·r with it.

  python benchmarks/redundancy.py
  python benchmarks/redundancy.py --q 1,3 --steps 100
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
SCHEMES = ("baseline", "detox", "mols")


def accuracy(args: list[str], evaluation: pathlib.Path) -> float | None:
  """The run's final test accuracy; None when the rule cannot hold (runner.py refuses the configuration)."""
  result = subprocess.run([sys.executable, str(REPO_ROOT / "runner.py"), *args, "--evaluation-file", str(evaluation)],
                          env=ENVIRONMENT, capture_output=True, text=True, timeout=1800, check=False)
  if result.returncode == 2 and "needs n >=" in result.stderr:
    return None
  if result.returncode != 0:
    raise RuntimeError(f"runner.py {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
  return float(re.findall(r"accuracy:(\S+)", evaluation.read_text())[-1])


def main(argv=None) -> dict[tuple[str, int], float | None]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workers", type=int, default=15, help="K")
  parser.add_argument("--replication", type=int, default=3, help="r")
  parser.add_argument("--q", default="0,1,3,5,6", help="comma-separated numbers of Byzantine workers")
  parser.add_argument("--aggregator", default="median")
  parser.add_argument("--attack", default="empire")
  parser.add_argument("--attack-args", nargs="*", default=["factor:10"])
  parser.add_argument("--total-batch", type=int, default=480, help="examples per step, in every scheme")
  parser.add_argument("--steps", type=int, default=300)
  flags = parser.parse_args(argv)
  from aggregathor import redundancy  # pylint: disable=g-import-not-at-top

  data = pathlib.Path(os.environ.get("AGGREGATHOR_DATA", REPO_ROOT.parent / "shared" / "data"))
  experiment = (["--experiment", "mnist", "--experiment-args", f"idx-dir:{data / 'mnist'}"]
                if (data / "mnist").is_dir() else ["--experiment", "digits", "--experiment-args"])
  placements = {name: redundancy.get(name, nb_workers=flags.workers, replication=flags.replication)
                for name in SCHEMES[1:]}
  rows = {"baseline": flags.workers, **{name: p.nb_files for name, p in placements.items()}}
  cost = {"baseline": flags.workers, **{name: p.nb_files * p.replication for name, p in placements.items()}}
  results: dict[tuple[str, int], float | None] = {}
  with tempfile.TemporaryDirectory(prefix="aggregathor-redundancy-bench-") as temporary:
    for q in (int(value) for value in flags.q.split(",")):
      for scheme in SCHEMES:
        args = [*experiment, f"batch-size:{max(1, flags.total_batch // rows[scheme])}", "--nb-workers",
                str(flags.workers), "--aggregator", flags.aggregator, "--max-steps", str(flags.steps),
                "--evaluation-delta", "100000", "--evaluation-period", "-1", "--checkpoint-period", "-1",
                "--summary-period", "-1", "--log-period", "-1", "--checkpoint-dir", "-"]
        if scheme == "baseline":
          args += ["--nb-decl-byz-workers", str(q)]
        else:
          args += ["--redundancy", scheme, "--replication", str(flags.replication)]
        if q:
          args += ["--nb-real-byz-workers", str(q), "--attack", flags.attack, "--attack-args", *flags.attack_args]
        results[(scheme, q)] = accuracy(args, pathlib.Path(temporary) / f"{scheme}-{q}.tsv")
        shown = "-" if results[(scheme, q)] is None else f"{results[(scheme, q)]:.4f}"
        print(f"q={q} {scheme}: {shown}", flush=True)

  distorted = {name: {q: p.worst_case(q).distorted for q in {q for _, q in results}} for name, p in placements.items()}
  print(f"\nK={flags.workers}, r={flags.replication}, {flags.aggregator}, {flags.attack} {' '.join(flags.attack_args)}, "
        f"{flags.total_batch} examples a step, {flags.steps} steps; test accuracy (distorted files / files)")
  print("| q | baseline | detox | mols (ByzShield) |")
  print("|---|---|---|---|")
  for q in sorted({q for _, q in results}):
    cells = []
    for scheme in SCHEMES:
      value = results[(scheme, q)]
      cell = "-" if value is None else f"{value:.4f}"
      if scheme != "baseline":
        cell += f" ({distorted[scheme][q]}/{rows[scheme]})"
      cells.append(cell)
    print(f"| {q} | " + " | ".join(cells) + " |")
  print("gradients computed per step: " + ", ".join(f"{scheme} {cost[scheme]}" for scheme in SCHEMES))
  return results


if __name__ == "__main__":
  main()
