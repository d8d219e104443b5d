#!/usr/bin/env python3
"""Time and peak memory of each rule as n and d grow, with a fit of time to n and d.

For each n in `--n` (default 8, 32, 64, 128, 256) and each d in `--d` that fits
`--max-bytes` (n * d * 4 bytes; default the smaller of 8 GB and a quarter of the
machine's memory), every rule is timed on a float32 (n, d) matrix of standard
normal values, f = floor((n - 3) / 4), interleaved with the read and Gram floors
of the same run (see benchmarks/gars.py, whose timing this reuses).

Peak memory: at the largest d of each n (from 10^6 on), each rule runs once
more in a fresh process of its own, on an input made in place
(`tf.random.normal`), while a thread samples the resident set every
millisecond. TensorFlow's CPU allocator keeps what it frees for reuse, so only
a fresh process shows a rule's own peak. `peak/input` is (input + the peak
above the resident set before the call) / input; the issue's target is at most
2 for every rule. What compiling takes does not grow with d (about 1.2 GB for
a 256-row sorting network): it is measured first, on a small input of the
same n, and printed apart as `compile MB`.

The fit: each rule's times over the grid are fitted as t = c * n^a * d^b by
least squares on the logarithms, printed beside the exponents the rule's
complexity predicts (e.g. a = 2, b = 1 for the Gram product of Krum).

    python benchmarks/scale.py                          # the whole grid (about an hour on 2 cores)
    python benchmarks/scale.py --n 128,256 --d 1e6 --rules median,bulyan
    python benchmarks/scale.py --max-bytes 2e9          # a smaller machine
    python benchmarks/scale.py --quick                  # a tiny run, to check that it works
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
import pathlib
import subprocess
import sys
import threading
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


def _load_gars_benchmark():
  path = pathlib.Path(__file__).resolve().parent / "gars.py"
  spec = importlib.util.spec_from_file_location("benchmarks_gars", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


timing = _load_gars_benchmark()

DEFAULT_N = (8, 32, 64, 128, 256)
DEFAULT_D = (100_000, 1_000_000, 4_000_000, 25_000_000)
MEMORY_TARGET = 2.  # peak memory over the (n, d) input
MEMORY_MIN_D = 1_000_000
COMPILE_WARMUP_VALUES = 1 << 17  # n * d of the compiling call: above ops.FUSE_MIN_SIZE, so that XLA compiles it

# Exponents (a, b) of t ∝ n^a d^b that each rule's complexity predicts, where it is one power law:
# the coordinate-wise rules read the matrix a small number of times (log factors in n left out),
# the distance-based ones are dominated by the (n, n) Gram product.
EXPECTED = {
    **{name: (1, 1) for name in ("average", "average-nan", "median", "trimmed-mean", "averaged-median", "phocas",
                                "sign-majority", "centered-clipping", "clipping")},
    **{name: (2, 1) for name in ("krum", "multi-krum", "bulyan", "nnm", "geometric-median")},
    "floor:read": (1, 1),
    "floor:gram": (2, 1),
}


@dataclasses.dataclass
class Point:
  """One rule at one (n, d): time (ms), floors' ratio and peak memory over the input."""

  rule: str
  n: int
  d: int
  ms: float | None
  ratio: str = ""
  status: str = ""
  peak: float | None = None
  compile_mb: float | None = None
  memory_status: str = ""


# geometric-median's distances come from one Gram product, whose n² d work passes 10x the read
# floor's n d past about 32 workers (13x at n=128, 23x at 256 on 2 cores): there it is judged
# against the product itself.
GEOMETRIC_MEDIAN_GRAM_TARGET = 1.5
GEOMETRIC_MEDIAN_READ_MAX_N = 32


def time_target(rule: str, n: int, target: float) -> tuple[str | None, float]:
  """The floor and the ratio a rule is held to at n workers.

  benchmarks/gars.py's, but 8x the read floor for the coordinate-wise rules
  past 64 workers (the issue's), and GEOMETRIC_MEDIAN_GRAM_TARGET times the
  Gram product for geometric-median past GEOMETRIC_MEDIAN_READ_MAX_N.
  """
  if rule in timing.COORDINATE_WISE and n > 64:
    return None, 8.
  if rule == "geometric-median" and n > GEOMETRIC_MEDIAN_READ_MAX_N:
    return "gram", GEOMETRIC_MEDIAN_GRAM_TARGET
  return None, target


def default_max_bytes() -> float:
  try:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    return 8e9
  return min(8e9, memory / 4)


def parse_ints(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(float(item)) for item in text.split(",") if item.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected numbers separated by commas (e.g. 8,32 or 1e5,1e6), got {text!r}") \
        from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected at least one number, each >= 1, got {text!r}")
  return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=parse_ints, default=None, help="numbers of workers (default 8,32,64,128,256)")
  parser.add_argument("--d", type=parse_ints, default=None, help="dimensions (default 1e5,1e6,4e6,2.5e7)")
  parser.add_argument("--max-bytes", type=float, default=None,
                      help="largest n*d*4 bytes to run (default: the smaller of 8e9 and a quarter of the memory)")
  parser.add_argument("--rules", type=timing.parse_rules, default=None,
                      help="rules separated by commas (default: every registered rule)")
  parser.add_argument("--repeats", type=int, default=None, help="timed calls per rule (default 3; 1 with --quick)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
  parser.add_argument("--quick", action="store_true", help="a tiny grid, to check the script")
  parser.add_argument("--no-memory", action="store_true", help="time only, without the peak-memory processes")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # RULE,N,D: the child of peak_in_fresh_process
  args = parser.parse_args(argv)
  if args.quick:
    args.n, args.d = args.n or (8, 16), args.d or (500, 2000)
  args.n, args.d = args.n or DEFAULT_N, args.d or DEFAULT_D
  args.max_bytes = default_max_bytes() if args.max_bytes is None else args.max_bytes
  if args.max_bytes <= 0:
    parser.error(f"expected --max-bytes > 0, got {args.max_bytes:g}")
  args.repeats = args.repeats or (1 if args.quick else 3)
  if args.repeats < 1 or args.warmup < 0:
    parser.error(f"expected --repeats >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
  args.rules = args.rules or tuple(gars.names())
  return args


def resident_bytes() -> int:
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_above(call: Callable[[], object]) -> int:
  """The peak resident set during `call()` above the one before it, in bytes, sampled every millisecond."""
  baseline = resident_bytes()
  peak = baseline
  done = threading.Event()

  def sample() -> None:
    nonlocal peak
    while not done.is_set():
      peak = max(peak, resident_bytes())
      time.sleep(0.001)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  try:
    call()
  finally:
    done.set()
    sampler.join()
  return max(peak, resident_bytes()) - baseline


def peak_over_input(rule_name: str, n: int, d: int, seed: int) -> tuple[float, float]:
  """(input + the peak resident set above the one before the call) / input, and the compiler's MB.

  The rule first runs on n rows of COMPILE_WARMUP_VALUES / n values (at least
  1024), which compiles the same computation but for its length: its peak, in
  MB, is what compiling takes, whatever d (1.2 GB for a 256-row network).
  The compiler's memory stays in the process's heap, so the (n, d) call that
  follows, which compiles again, shows the rule's own data.
  """
  tf.random.set_seed(seed)
  f = timing.byzantine_count(n)
  # A fresh instance for each length: a stateful rule (centered-clipping's center) keeps its first d.

  def function(rule: gars.Rule) -> Callable[[tf.Tensor], tf.Tensor]:
    return tf.function(lambda g: rule.aggregate(g, f))

  small = tf.random.normal((n, max(1024, -(-COMPILE_WARMUP_VALUES // n))))
  compile_bytes = peak_above(lambda: timing._timed(lambda: function(gars.get(rule_name))(small)))
  gradients = tf.random.normal((n, d))
  aggregate = function(gars.get(rule_name))
  peak = peak_above(lambda: timing._timed(lambda: aggregate(gradients)))
  return (n * d * 4 + max(peak, 0)) / (n * d * 4), max(compile_bytes, 0) / 1e6


def peak_in_fresh_process(rule_name: str, n: int, d: int, seed: int) -> tuple[float, float] | None:
  """`peak_over_input` in a child process of this script; None if it failed (its error is printed)."""
  command = [sys.executable, os.path.abspath(__file__), "--peak-of", f"{rule_name},{n},{d}", "--seed", str(seed)]
  child = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
  lines = child.stdout.strip().splitlines()
  if child.returncode != 0 or not lines:
    print(f"peak memory of {rule_name} at n={n}, d={d} failed: {child.stderr.strip().splitlines()[-1:]}",
          file=sys.stderr)
    return None
  ratio, compile_mb = (float(value) for value in lines[-1].split())
  return ratio, compile_mb


def fit_exponents(points: Sequence[Point]) -> tuple[float, float] | None:
  """Least-squares (a, b) of log t = log c + a log n + b log d; None without enough distinct n and d."""
  points = [p for p in points if p.ms]
  if len({p.n for p in points}) < 2 or len({p.d for p in points}) < 2 or len(points) < 3:
    return None
  design = np.array([[1., math.log(p.n), math.log(p.d)] for p in points])
  times = np.array([math.log(p.ms) for p in points])
  solution, *_ = np.linalg.lstsq(design, times, rcond=None)
  return float(solution[1]), float(solution[2])


def measure(n: int, d: int, args: argparse.Namespace, memory: bool) -> list[Point]:
  """Times every rule at (n, d); with `memory`, also each one's peak memory in a fresh process."""
  rows = timing.benchmark_size(n, d, args.rules, args.repeats, args.warmup, False, args.seed)
  floors = {row.rule.removeprefix("floor:"): row.ms for row in rows if row.rule.startswith("floor:")}
  points = []
  for row in rows:
    status = row.status + (f" ({row.error})" if row.error else "")
    ratio, floor = row.ratio, row.floor
    if row.target is not None and ratio is not None:
      other_floor, target = time_target(row.rule, n, row.target)
      if other_floor is not None and floors.get(other_floor):
        ratio, floor = row.ms / floors[other_floor], other_floor
      status = f"{'PASS' if ratio <= target else 'MISS'} (<= {target:g}x)"
    points.append(Point(row.rule, n, d, row.ms, "" if ratio is None else f"{ratio:.2f}x {floor}", status))
  if not memory:
    return points
  for point in points:
    if point.rule.startswith("floor:") or point.ms is None:
      continue
    measured = peak_in_fresh_process(point.rule, n, d, args.seed)
    if measured is not None:
      point.peak, point.compile_mb = measured
      point.memory_status = "PASS" if point.peak <= MEMORY_TARGET else "MISS"
  return points


def _table(lines: Sequence[Sequence[str]]) -> str:
  """Rows of cells, the first a header, in left-aligned columns."""
  widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
  return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def format_points(points: Sequence[Point]) -> str:
  lines = [("rule", "n", "d", "ms", "ratio", "time", "peak/input", "memory", "compile MB")]
  for p in points:
    lines.append((p.rule, str(p.n), f"{p.d:.1e}", "-" if p.ms is None else f"{p.ms:.1f}", p.ratio, p.status,
                  "" if p.peak is None else f"{p.peak:.2f}", p.memory_status,
                  "" if p.compile_mb is None else f"{p.compile_mb:.0f}"))
  return _table(lines)


def format_fits(points: Sequence[Point]) -> str:
  lines = [("rule", "fitted t ∝", "expected")]
  for rule in dict.fromkeys(p.rule for p in points):
    fit = fit_exponents([p for p in points if p.rule == rule])
    expected = EXPECTED.get(rule)
    lines.append((rule, "-" if fit is None else f"n^{fit[0]:.2f} d^{fit[1]:.2f}",
                  "" if expected is None else f"n^{expected[0]} d^{expected[1]}"))
  return _table(lines)


def main(argv: Sequence[str] | None = None) -> list[Point]:
  """Runs the grid, prints a table per size, then the fits; returns the points."""
  args = parse_args(argv)
  if args.peak_of:
    rule_name, n, d = args.peak_of.split(",")
    print(*peak_over_input(rule_name, int(n), int(d), args.seed))
    return []
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")  # each rule is its own tf.function, which TensorFlow calls retracing
  try:
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; float32, f = floor((n-3)/4), median of "
          f"{args.repeats} calls after {args.warmup} warm-up; n*d*4 <= {args.max_bytes:.3g} bytes", flush=True)
    points: list[Point] = []
    for n in args.n:
      dimensions = [d for d in args.d if n * d * 4 <= args.max_bytes]
      for d in dimensions:
        memory = not args.no_memory and d == dimensions[-1] and (d >= MEMORY_MIN_D or args.quick)
        size_points = measure(n, d, args, memory)
        print(format_points(size_points), end="\n\n", flush=True)
        points.extend(size_points)
    print(format_fits(points))
    misses = sorted({f"{p.rule} (n={p.n}, d={p.d:.0e}{', memory' if p.memory_status == 'MISS' else ''})"
                     for p in points if p.status.startswith(("MISS", "ERROR")) or p.memory_status == "MISS"})
    print("all targets met" if not misses else f"missed or failed: {', '.join(misses)}")
    return points
  finally:
    logger.setLevel(level)


if __name__ == "__main__":
  main()
