"""How many absent workers a step can go on without: the rule's condition on the rows received, f Byzantine."""

from __future__ import annotations

from typing import Any, Mapping

from absl import logging

from aggregathor import gars
from strategies.cluster.spec import ClusterError


def holds(rule: gars.Rule, n: int, f: int, args: Mapping[str, Any]) -> bool:
  """Whether `rule`'s condition holds on n rows with f Byzantine."""
  try:
    rule.check(n, f, **args)
  except ValueError:
    return False
  return True


def tolerated_missing(rule: gars.Rule, name: str, n: int, f: int, args: Mapping[str, Any]) -> int:
  """The most absent workers with which `rule` still holds (f of the rows received may be Byzantine), said once.

  With a first-(n-f) quorum, the f Byzantine rows may be among the rows
  received: median then needs n - m >= 3f + 1 on the m absent, Krum
  n - m >= 2f + 3, and so on; this may be fewer than f.
  """
  rule.check(n, f, **args)
  tolerated = max((m for m in range(n) if holds(rule, n - m, f, args)), default=0)
  if not holds(rule, n - f, f, args):
    logging.warning("With a first-(n-f) quorum the f=%d Byzantine rows may be among the %d rows received, and %s "
                    "does not hold on %d rows with f=%d: this run tolerates %d missing worker(s), not f",
                    f, n - f, name, n - f, f, tolerated)
  return tolerated


def require(missing: list[int], tolerated: int, step: int, describe, name: str, n: int, f: int) -> None:
  """Raises `ClusterError`, naming the absent workers, if more than `tolerated` are; else warns of them."""
  if len(missing) > tolerated:
    raise ClusterError(
        f"step {step}: {len(missing)} of the {n} workers gave no usable row by the deadline "
        f"({'; '.join(describe(i) for i in missing)}), and {name} with f={f} needs at most {tolerated} absent: "
        "training stops here (restart the workers, then rerun to resume from the checkpoint)")
  if missing:
    logging.log_every_n_seconds(logging.WARNING, "Step %d goes on without %s", 10, step,
                                ", ".join(describe(i) for i in missing))


def require_files(missing: list[int], lost: list[int], step: int, describe, rule: gars.Rule, name: str,
                  nb_files: int, f: int, args: Mapping[str, Any]) -> None:
  """With a redundancy defence: raises `ClusterError` if `rule` fails on the files of which a copy came."""
  if lost and not holds(rule, nb_files - len(lost), f, args):
    raise ClusterError(
        f"step {step}: no copy of {len(lost)} of the {nb_files} files came by the deadline (absent: "
        f"{'; '.join(describe(i) for i in missing)}), and {name} with f={f} does not hold on the "
        f"{nb_files - len(lost)} left: training stops here (restart the workers, then rerun to resume from the "
        "checkpoint)")
  if missing:
    logging.log_every_n_seconds(logging.WARNING, "Step %d goes on without %s (%d file(s) lost)", 10, step,
                                ", ".join(describe(i) for i in missing), len(lost))
