"""DETOX's placement: disjoint groups of r workers, each group computing one file.

Rajput, Wang, Charles, Papailiopoulos, "DETOX: A Redundancy-based Framework for
Faster and More Robust Gradient Aggregation", NeurIPS 2019. Group g is the
workers g·r, ..., g·r + r − 1 (0-indexed), all holding file g. When r does not
divide K, the K mod r workers left over join the last group, as in the
reference code, whose file then has more copies.
"""

from __future__ import annotations

from aggregathor.redundancy import register
from aggregathor.redundancy._base import Placement


@register
class Detox(Placement):
  name = "detox"

  def __init__(self, nb_workers: int, replication: int):
    super().__init__(nb_workers, replication)
    groups = [list(range(g * replication, (g + 1) * replication)) for g in range(nb_workers // replication)]
    groups[-1] += list(range(len(groups) * replication, nb_workers))
    self._set_files(groups)

  def worst_attack(self, q: int) -> tuple[int, ...]:
    """DETOX's "worst" attack: r' = majority Byzantines in each of the first ⌊q/r'⌋ groups, the rest after.

    It distorts ⌊q/r'⌋ of the K/r files, the most possible here.
    """
    majority, chosen = self.majority, []
    for workers in self.files[:q // majority]:
      chosen += workers[:majority]
    rest = [w for w in range(self.nb_workers) if w not in chosen]
    return tuple(sorted(chosen + rest[:q - len(chosen)]))

  def benign_attack(self, q: int) -> tuple[int, ...]:
    """DETOX's "benign" attack: one Byzantine per group, group after group, until q are placed."""
    order = [workers[position] for position in range(max(len(w) for w in self.files))
             for workers in self.files if position < len(workers)]
    return tuple(sorted(order[:q]))

  def whole_group_attack(self, q: int) -> tuple[int, ...]:
    """DETOX's "whole group" attack: the first q workers, filling the first groups entirely."""
    return tuple(range(q))
