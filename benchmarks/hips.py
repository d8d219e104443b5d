#!/usr/bin/env python3
"""HiPS's accuracy against the bytes the parties push to the global PS: synchronous and asynchronous (ASGD, DC-ASGD),
with and without MXNet's 2-bit compression of the pushes.

n workers (default 12) in P parties (default 4), each party's PS averaging
its workers (FedAvg with `--local-steps`), the global PS averaging the parties
(synchronous) or applying each party's push as it arrives (asynchronous, the
parties' compute times spread by `--delay-spread`). An asynchronous run takes
P times the steps of a synchronous one, each step one party's push, for as
many party rounds. 2-bit pushes use τ = `--threshold`. On MNIST from
$AGGREGATHOR_DATA or ../shared/data (the embedded digits without it); CIFAR-10
on a user's machine with `--experiment cifar10` (through tensorflow-datasets).

  python benchmarks/hips.py
  python benchmarks/hips.py --rounds 100 --local-steps 5
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
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(args: list[str], evaluation: pathlib.Path) -> dict[str, float]:
  """The final test accuracy, the MB the workers and the parties sent, and the mean staleness, of one run."""
  result = subprocess.run([sys.executable, str(REPO_ROOT / "runner.py"), *args, "--evaluation-file", str(evaluation)],
                          env=ENVIRONMENT, capture_output=True, text=True, timeout=3600, check=False)
  if result.returncode != 0:
    raise RuntimeError(f"runner.py {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
  staleness = re.search(r"Staleness of the parties' pushes \(\S+\): mean (\S+), max (\d+)", result.stdout)
  return {"accuracy": float(re.findall(r"accuracy:(\S+)", evaluation.read_text())[-1]),
          "workers_mb": float(re.search(r"Sent (\S+) MB", result.stdout)[1]),
          "parties_mb": float(re.search(r"Parties pushed (\S+) MB", result.stdout)[1]),
          "staleness": float(staleness[1]) if staleness else 0.0,
          "max_staleness": int(staleness[2]) if staleness else 0}


def main(argv=None) -> dict[tuple[str, str], dict[str, float]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--experiment", default=None, help="default: mnist from the data directory, else digits")
  parser.add_argument("--workers", type=int, default=12)
  parser.add_argument("--parties", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=300, help="synchronous steps (asynchronous: parties times more)")
  parser.add_argument("--local-steps", type=int, default=1)
  parser.add_argument("--learning-rate", type=float, default=0.1)
  parser.add_argument("--delay-spread", type=float, default=2.0)
  parser.add_argument("--threshold", type=float, default=0.01, help="2bit's τ")
  flags = parser.parse_args(argv)
  data = pathlib.Path(os.environ.get("AGGREGATHOR_DATA", REPO_ROOT.parent / "shared" / "data"))
  if flags.experiment:
    experiment = ["--experiment", flags.experiment]
  else:
    experiment = (["--experiment", "mnist", "--experiment-args", f"idx-dir:{data / 'mnist'}"]
                  if (data / "mnist").is_dir() else ["--experiment", "digits"])
  common = [*experiment, "--evaluation-delta", "1000000", "--evaluation-period", "-1", "--checkpoint-period", "-1",
            "--summary-period", "-1", "--log-period", "-1", "--checkpoint-dir", "-", "--nb-workers",
            str(flags.workers), "--parties", str(flags.parties), "--local-steps", str(flags.local_steps),
            "--learning-rate-args", f"initial-rate:{flags.learning_rate}"]
  asynchronous = ["--asynchronous", "--delay-spread", str(flags.delay_spread), "--max-steps",
                  str(flags.rounds * flags.parties)]
  settings = {"sync": ["--max-steps", str(flags.rounds)], "async ASGD": asynchronous,
              "async DC-ASGD": [*asynchronous, "--global-update", "dc-asgd"]}
  pushes = {"float32": [], "2bit": ["--party-compression", "2bit", "--party-compression-args",
                                    f"threshold:{flags.threshold}"]}
  results = {}
  with tempfile.TemporaryDirectory(prefix="aggregathor-hips-bench-") as temporary:
    for setting, args in settings.items():
      for name, compression in pushes.items():
        results[(setting, name)] = outcome = run([*common, *args, *compression],
                                                 pathlib.Path(temporary) / f"{len(results)}.tsv")
        print(f"{setting}, {name} pushes: accuracy {outcome['accuracy']:.4f}, parties pushed "
              f"{outcome['parties_mb']:.3f} MB, workers sent {outcome['workers_mb']:.3f} MB", flush=True)
  print(f"\n{experiment[1]}, {flags.workers} workers in {flags.parties} parties, {flags.rounds} rounds of each party "
        f"({flags.local_steps} local step(s)), lr {flags.learning_rate}, 2-bit τ {flags.threshold}, async delay spread "
        f"{flags.delay_spread}")
  print("| mode | push | test accuracy | MB pushed to the global PS | less than float32 | mean (max) staleness |")
  print("|---|---|---|---|---|---|")
  for (setting, name), outcome in results.items():
    ratio = results[(setting, "float32")]["parties_mb"] / outcome["parties_mb"]
    stale = f"{outcome['staleness']:.2f} ({outcome['max_staleness']})" if setting != "sync" else "0 (0)"
    print(f"| {setting} | {name} | {outcome['accuracy']:.4f} | {outcome['parties_mb']:.3f} | {ratio:.1f}x | {stale} |")
  return results


if __name__ == "__main__":
  main()
