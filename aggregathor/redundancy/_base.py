"""What every placement is: files on workers, the majority that distorts a file, and the adversary's best choice."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Sequence

import numpy as np

# Past this many (subset, file) counts, `worst_case` searches heuristically instead of exhaustively.
EXHAUSTIVE_LIMIT = 6 * 10**8


@dataclasses.dataclass(frozen=True)
class WorstCase:
  """The most files that `len(workers)` Byzantine workers can distort, and such a set of workers.

  exact: whether an exhaustive search proved it the most (else it is the best a
  greedy search with local improvements found: a lower bound).
  """
  distorted: int
  workers: tuple[int, ...]
  exact: bool


class Placement:
  """Files (parts of each batch) on workers: file f is computed by the workers `files[f]`, 0-indexed.

  A file is distorted when Byzantine workers hold a strict majority of its
  copies, at least r // 2 + 1 of r ((r+1)/2 for odd r, as in the papers): the
  vote then returns their value. Subclasses build `files` in `__init__` and
  call `_set_files`.
  """

  name: ClassVar[str] = ""

  def __init__(self, nb_workers: int, replication: int):
    for what, value, least in (("nb_workers", nb_workers, 1), ("replication", replication, 1)):
      if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"placement {self.name}: expected {what} >= {least} as an int, got {value!r}")
    if replication > nb_workers:
      raise ValueError(f"placement {self.name}: replication {replication} exceeds the {nb_workers} workers")
    self.nb_workers = nb_workers
    self.replication = replication
    self.files: tuple[tuple[int, ...], ...] = ()

  def _set_files(self, files: Sequence[Sequence[int]]) -> None:
    self.files = tuple(tuple(sorted(int(w) for w in workers)) for workers in files)
    incidence = np.zeros((self.nb_workers, len(self.files)), np.int8)
    for index, workers in enumerate(self.files):
      incidence[list(workers), index] = 1
    self.incidence = incidence

  @property
  def nb_files(self) -> int:
    return len(self.files)

  @property
  def majority(self) -> int:
    """How many Byzantine copies distort a file: a strict majority of the replication."""
    return self.replication // 2 + 1

  @property
  def loads(self) -> np.ndarray:
    """How many files each worker computes."""
    return self.incidence.sum(axis=1)

  def files_of(self, worker: int) -> tuple[int, ...]:
    return tuple(int(f) for f in np.nonzero(self.incidence[worker])[0])

  def distorted(self, workers: Sequence[int]) -> int:
    """How many files the Byzantine `workers` hold a majority of."""
    counts = self.incidence[list(workers)].sum(axis=0)
    return int((counts >= self.majority).sum())

  def worst_case(self, q: int, seed: int = 0) -> WorstCase:
    """The most files q Byzantine workers can distort, with such a set (ByzShield's c_max and its attack).

    Exhaustive (all C(K, q) sets, built level by level) while that is at most
    `EXHAUSTIVE_LIMIT` counts; otherwise a seeded greedy search with swaps,
    which gives a lower bound (`exact` False).
    """
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= self.nb_workers:
      raise ValueError(f"expected 0 <= q <= {self.nb_workers} Byzantine workers, got {q!r}")
    if q == 0:
      return WorstCase(0, (), True)
    cost = sum(math.comb(self.nb_workers, j) for j in range(1, q + 1)) * self.nb_files
    if cost <= EXHAUSTIVE_LIMIT:
      return self._exhaustive(q)
    return self._heuristic(q, seed)

  def _exhaustive(self, q: int) -> WorstCase:
    incidence = self.incidence
    workers = np.arange(self.nb_workers)
    last, counts = workers.copy(), incidence.copy()
    lasts, parents = [last], [None]
    for _ in range(1, q):
      # Every set of one more worker: a set extended by each worker numbered above its last.
      new_last, new_counts, new_parent = [], [], []
      for worker in workers:
        extended = np.nonzero(last < worker)[0]
        if extended.size:
          new_parent.append(extended)
          new_last.append(np.full(extended.size, worker, last.dtype))
          new_counts.append(counts[extended] + incidence[worker])
      last, counts = np.concatenate(new_last), np.concatenate(new_counts)
      lasts.append(last)
      parents.append(np.concatenate(new_parent))
    distorted = (counts >= self.majority).sum(axis=1)
    index = int(np.argmax(distorted))
    chosen = []
    for level in range(q - 1, -1, -1):
      chosen.append(int(lasts[level][index]))
      if level:
        index = int(parents[level][index])
    return WorstCase(int(distorted.max()), tuple(sorted(chosen)), True)

  def _heuristic(self, q: int, seed: int, restarts: int = 20) -> WorstCase:
    rng = np.random.default_rng(seed)
    best = WorstCase(-1, (), False)
    for _ in range(restarts):
      chosen = [int(rng.integers(self.nb_workers))]
      while len(chosen) < q:
        # Greedy: the worker that distorts the most files, ties broken by copies gained toward majorities.
        counts = self.incidence[chosen].sum(axis=0)
        gains = []
        for worker in range(self.nb_workers):
          if worker in chosen:
            gains.append((-1, -1, 0.0))
            continue
          after = counts + self.incidence[worker]
          gains.append((int((after >= self.majority).sum()), int(np.minimum(after, self.majority).sum()),
                        float(rng.random())))
        chosen.append(int(max(range(self.nb_workers), key=gains.__getitem__)))
      value = self.distorted(chosen)
      improved = True
      while improved:
        improved = False
        for out in list(chosen):
          for worker in range(self.nb_workers):
            if worker in chosen:
              continue
            trial = [w for w in chosen if w != out] + [worker]
            trial_value = self.distorted(trial)
            if trial_value > value:
              chosen, value, improved = trial, trial_value, True
              break
          if improved:
            break
      if value > best.distorted:
        best = WorstCase(value, tuple(sorted(chosen)), False)
    return best

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(nb_workers={self.nb_workers}, replication={self.replication}, "
            f"nb_files={self.nb_files})")


def is_prime(value: int) -> bool:
  return value >= 2 and all(value % d for d in range(2, math.isqrt(value) + 1))
