#!/usr/bin/env python3
"""Speed of the aggregation rules against two floors measured in the same run.

For each (n, d), f = floor((n - 3) / 4), every rule is timed as a `tf.function`
on a pre-made float32 (n, d) matrix of standard normal values: the median of
`--repeats` calls after warm-up. Beside it, two floors:

- read: one pass over the (n, d) matrix (`tf.reduce_sum`);
- gram: the (n, d) x (d, n) Gram product (`tf.matmul(g, g, transpose_b=True)`).

Targets (from the issue): coordinate-wise rules within 3x the read floor; krum,
multi-krum and bulyan within 2x the Gram product; geometric-median within 10x
the read floor. Other rules are printed with their ratio to the read floor and
no target.

The machine is shared, so the rules and floors are timed interleaved (one call
of each per round), which spreads load changes evenly over them; compare ratios
within one run.

    python benchmarks/gars.py                         # n in {8, 32}, d in {1e5, 1e6}
    python benchmarks/gars.py --sizes 8x1000000 --rules median,krum --repeats 30
    python benchmarks/gars.py --jit                   # also the jit_compile=True variants
    python benchmarks/gars.py --quick                 # a tiny run, to check that it works
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
  from aggregathor import gars  # noqa: E402
except ImportError:  # run as a script from a checkout, without installing the package
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from aggregathor import gars  # noqa: E402

DEFAULT_SIZES = ((8, 100_000), (8, 1_000_000), (32, 100_000), (32, 1_000_000))
QUICK_SIZES = ((8, 1_000),)

# rule -> (floor, factor): the targets.
COORDINATE_WISE = ("average", "average-nan", "median", "trimmed-mean", "averaged-median", "phocas",
                   "sign-majority")
TARGETS: dict[str, tuple[str, float]] = {
    **{name: ("read", 3.) for name in COORDINATE_WISE},
    **{name: ("gram", 2.) for name in ("krum", "multi-krum", "bulyan")},
    "geometric-median": ("read", 10.),
}
# Rules without a target are compared with this floor, for information.
INFO_FLOOR = "read"
FLOORS = ("read", "gram")


@dataclasses.dataclass
class Row:
  """One line of the table; `ms` is None when the rule failed (see `error`)."""

  rule: str
  n: int
  d: int
  ms: float | None
  floor: str = ""
  ratio: float | None = None
  target: float | None = None
  status: str = ""
  error: str = ""


def byzantine_count(n: int) -> int:
  """f = floor((n - 3) / 4), the largest f that every rule with a condition on n accepts (Bulyan's n >= 4f + 3)."""
  return max((n - 3) // 4, 0)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
  """'8x100000,32x1e6' -> ((8, 100000), (32, 1000000))."""
  sizes = []
  for item in text.split(","):
    try:
      n, d = item.strip().lower().split("x")
      size = (int(n), int(float(d)))
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected sizes as NxD pairs separated by commas (e.g. 8x1e5,32x1e6), "
                                       f"got {item!r}") from None
    if size[0] < 1 or size[1] < 1:
      raise argparse.ArgumentTypeError(f"expected n >= 1 and d >= 1, got {item!r}")
    sizes.append(size)
  return tuple(sizes)


def parse_rules(text: str) -> tuple[str, ...]:
  """'median,krum' -> ('median', 'krum'), each checked against the registry (chains like 'nnm>krum' allowed)."""
  rules = tuple(name.strip() for name in text.split(",") if name.strip())
  if not rules:
    raise argparse.ArgumentTypeError("expected at least one rule name")
  for name in rules:
    try:
      gars.get(name)
    except ValueError as error:
      raise argparse.ArgumentTypeError(str(error)) from None
  return rules


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", type=parse_sizes, default=None,
                      help="NxD pairs separated by commas (default: 8x1e5,8x1e6,32x1e5,32x1e6)")
  parser.add_argument("--repeats", type=int, default=None, help="timed calls per rule (default 15; 3 with --quick)")
  parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2; 1 with --quick)")
  parser.add_argument("--rules", type=parse_rules, default=None,
                      help="rules (or chains such as nnm>krum) separated by commas (default: every registered rule)")
  parser.add_argument("--jit", action="store_true", help="also time each rule compiled with jit_compile=True")
  parser.add_argument("--quick", action="store_true", help="a tiny run (n=8, d=1000, few repeats) to check the script")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.sizes is None:
    args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
  if args.repeats is None:
    args.repeats = 3 if args.quick else 15
  if args.warmup is None:
    args.warmup = 1 if args.quick else 2
  if args.repeats < 1 or args.warmup < 0:
    parser.error(f"expected --repeats >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
  if args.rules is None:
    args.rules = tuple(gars.names())
  return args


def _timed(fn: Callable[[], object]) -> float:
  start = time.perf_counter()
  result = fn()
  # CPU eager calls are synchronous; reading a scalar also waits where they are not.
  if isinstance(result, tf.Tensor):
    result = tf.reshape(result, [-1])[0].numpy()
  elif isinstance(result, (tuple, list)):
    tf.reshape(result[0], [-1])[0].numpy()
  return time.perf_counter() - start


def _rule_function(name: str, f: int, jit: bool) -> Callable[[tf.Tensor], tf.Tensor]:
  rule = gars.get(name)  # one instance per function: centered-clipping keeps its own state
  return tf.function(lambda g: rule.aggregate(g, f), jit_compile=jit)


def benchmark_size(n: int, d: int, rules: Sequence[str], repeats: int, warmup: int, jit: bool,
                   seed: int) -> list[Row]:
  """Times the floors and the rules on one (n, d) float32 matrix; rules that check() refuses are left out."""
  f = byzantine_count(n)
  gradients = tf.constant(np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32))
  functions: dict[str, Callable[[], object]] = {
      "read": (lambda fn: lambda: fn(gradients))(tf.function(tf.reduce_sum)),
      "gram": (lambda fn: lambda: fn(gradients))(tf.function(lambda g: tf.matmul(g, g, transpose_b=True))),
  }
  labels: dict[str, str] = {}
  errors: dict[str, str] = {}
  for name in rules:
    try:
      gars.get(name).check(n, f)
    except ValueError:
      continue  # e.g. mda at n=32, whose exact search check() refuses
    for compiled in (False, True) if jit else (False,):
      label = f"{name} [jit]" if compiled else name
      labels[label] = name
      functions[label] = (lambda fn: lambda: fn(gradients))(_rule_function(name, f, compiled))
  samples: dict[str, list[float]] = {label: [] for label in functions}
  for round_ in range(warmup + repeats):
    for label, fn in functions.items():
      if label in errors:
        continue
      try:
        elapsed = _timed(fn)
      except Exception as error:  # noqa: BLE001 - e.g. an op XLA cannot compile: reported in the table
        errors[label] = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
        continue
      if round_ >= warmup:
        samples[label].append(elapsed)
  floors = {name: 1e3 * statistics.median(samples[name]) for name in FLOORS}
  rows = [Row(f"floor:{name}", n, d, floors[name]) for name in FLOORS]
  for label, name in labels.items():
    if label in errors:
      rows.append(Row(label, n, d, None, status="ERROR", error=errors[label]))
      continue
    ms = 1e3 * statistics.median(samples[label])
    floor, target = TARGETS.get(name, (INFO_FLOOR, None))
    ratio = ms / floors[floor]
    status = "-" if target is None else ("PASS" if ratio <= target else "MISS")
    rows.append(Row(label, n, d, ms, floor, ratio, target, status))
  return rows


def format_table(rows: Sequence[Row]) -> str:
  header = ("rule", "n", "d", "ms", "ratio", "target", "status")
  lines = [header]
  for row in rows:
    ms = "-" if row.ms is None else f"{row.ms:.2f}"
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x {row.floor}"
    target = "" if row.target is None else f"<= {row.target:g}x {row.floor}"
    status = row.status + (f" ({row.error})" if row.error else "")
    lines.append((row.rule, str(row.n), f"{row.d:.0e}".replace("e+0", "e"), ms, ratio, target, status))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
  return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
                   for line in lines)


def main(argv: Sequence[str] | None = None) -> list[Row]:
  """Runs the benchmark, prints the table, returns its rows."""
  args = parse_args(argv)
  # Each rule is its own tf.function, which TensorFlow would warn about as "retracing".
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")
  try:
    return _run(args)
  finally:
    logger.setLevel(level)


def _run(args: argparse.Namespace) -> list[Row]:
  print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; float32, f = floor((n-3)/4), "
        f"median of {args.repeats} calls after {args.warmup} warm-up", flush=True)
  rows: list[Row] = []
  for n, d in args.sizes:
    size_rows = benchmark_size(n, d, args.rules, args.repeats, args.warmup, args.jit, args.seed)
    print(format_table(size_rows), end="\n\n", flush=True)
    rows.extend(size_rows)
  misses = [f"{row.rule} (n={row.n}, d={row.d})" for row in rows if row.status in ("MISS", "ERROR")]
  print("all targets met" if not misses else f"missed or failed: {', '.join(misses)}")
  return rows


if __name__ == "__main__":
  main()
