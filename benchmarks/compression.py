#!/usr/bin/env python3
"""Accuracy against the bytes the workers send, for each compressor: synchronous with the robust rule, and AdaComp's
asynchronous server against plain asynchronous SGD.

Synchronous: n workers (default 11), the rule (default median, f=2 declared),
with and without 2 Byzantine workers running `--attack` (default little),
for no compression, adacomp (c = 0.01), topk (1%, error feedback) and 2bit
(τ = `--threshold`). Asynchronous: the average of nothing, each gradient
applied as it arrives (`--asynchronous`), without compression (ASGD with the
staleness rule) and with adacomp; it runs n times the steps, for as many
gradients. On MNIST from $AGGREGATHOR_DATA or ../shared/data (the embedded
digits without it). The bytes are what all workers sent over the run.

  python benchmarks/compression.py
  python benchmarks/compression.py --steps 100 --workers 5
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
PAPER_RATIO = 191  # Hardy et al.: less data sent than ASGD for a CNN on MNIST, at the same accuracy


def run(args: list[str], evaluation: pathlib.Path) -> tuple[float, float]:
  """(final test accuracy, MB sent) of one runner.py run."""
  result = subprocess.run([sys.executable, str(REPO_ROOT / "runner.py"), *args, "--evaluation-file", str(evaluation)],
                          env=ENVIRONMENT, capture_output=True, text=True, timeout=3600, check=False)
  if result.returncode != 0:
    raise RuntimeError(f"runner.py {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
  accuracy = float(re.findall(r"accuracy:(\S+)", evaluation.read_text())[-1])
  return accuracy, float(re.search(r"Sent (\S+) MB", result.stdout)[1])


def main(argv=None) -> dict[tuple[str, str], tuple[float, float]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workers", type=int, default=11)
  parser.add_argument("--aggregator", default="median")
  parser.add_argument("--attack", default="little")
  parser.add_argument("--steps", type=int, default=300, help="synchronous steps (asynchronous: workers times more)")
  parser.add_argument("--threshold", type=float, default=0.01, help="2bit's τ")
  flags = parser.parse_args(argv)
  data = pathlib.Path(os.environ.get("AGGREGATHOR_DATA", REPO_ROOT.parent / "shared" / "data"))
  experiment = (["--experiment", "mnist", "--experiment-args", f"idx-dir:{data / 'mnist'}"]
                if (data / "mnist").is_dir() else ["--experiment", "digits"])
  compressors = {"none": [], "adacomp": ["--compression", "adacomp", "--compression-args", "compression_rate:0.01"],
                 "topk": ["--compression", "topk", "--compression-args", "ratio:0.01"],
                 "2bit": ["--compression", "2bit", "--compression-args", f"threshold:{flags.threshold}"]}
  quiet = ["--evaluation-delta", "1000000", "--evaluation-period", "-1", "--checkpoint-period", "-1",
           "--summary-period", "-1", "--log-period", "-1", "--checkpoint-dir", "-", "--nb-workers", str(flags.workers)]
  settings = {
      "sync": ["--aggregator", flags.aggregator, "--nb-decl-byz-workers", "2", "--max-steps", str(flags.steps)],
      f"sync, {flags.attack}": ["--aggregator", flags.aggregator, "--nb-decl-byz-workers", "2", "--nb-real-byz-workers",
                                "2", "--attack", flags.attack, "--max-steps", str(flags.steps)],
      "async": ["--asynchronous", "--max-steps", str(flags.steps * flags.workers)],
  }
  results = {}
  with tempfile.TemporaryDirectory(prefix="aggregathor-compression-bench-") as temporary:
    for setting, args in settings.items():
      for name, compression in compressors.items():
        if setting == "async" and name not in ("none", "adacomp"):
          continue
        results[(setting, name)] = run([*experiment, *quiet, *args, *compression],
                                       pathlib.Path(temporary) / f"{len(results)}.tsv")
        print(f"{setting} {name}: accuracy {results[(setting, name)][0]:.4f}, {results[(setting, name)][1]:.3f} MB",
              flush=True)
  print(f"\n{experiment[1]}, {flags.workers} workers, {flags.steps} synchronous steps ({flags.aggregator}, f=2), "
        f"{flags.steps * flags.workers} asynchronous ones")
  print("| setting | compressor | accuracy | MB sent | less than uncompressed |")
  print("|---|---|---|---|---|")
  for (setting, name), (accuracy, sent) in results.items():
    print(f"| {setting} | {name} | {accuracy:.4f} | {sent:.3f} | {results[(setting, 'none')][1] / sent:.1f}x |")
  asgd, adacomp = results[("async", "none")], results[("async", "adacomp")]
  print(f"AdaComp against ASGD: {asgd[1] / adacomp[1]:.1f}x less data (the paper: {PAPER_RATIO}x for its CNN), "
        f"accuracy {adacomp[0]:.4f} against {asgd[0]:.4f}")
  return results


if __name__ == "__main__":
  main()
