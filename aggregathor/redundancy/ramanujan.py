"""ByzShield's placements from Ramanujan bigraphs: the block matrix of powers of the cyclic shift.

Konstantinidis & Ramamoorthy, "ByzShield", MLSys 2021, Section 4 (after
Burnwal, Sinha & Vidyasagar's Ramanujan bigraphs). With s prime and P the s×s
cyclic shift (P[a, b] = 1 iff b = a + 1 mod s), B is the s² × m·s block
matrix whose block (i, j) is P^(i·j), for i = 0..s−1 and j = 0..m−1.
- Case 1 (`ramanujan-1`, m < s): workers are B's columns and files its rows:
  K = m·s workers, s² files, load s, replication r = m; so m = r, s = K/r.
- Case 2 (`ramanujan-2`, m ≥ s, s | m): workers are B's rows and files its
  columns: K = s² workers, m·s files, load m, replication r = s; m is given
  (`m`, default s).
"""

from __future__ import annotations

import math

import numpy as np

from aggregathor.redundancy import register
from aggregathor.redundancy._base import Placement, is_prime


def block_matrix(s: int, m: int) -> np.ndarray:
  """B: rows (i, a) = i·s + a, columns (j, b) = j·s + b, B[(i, a), (j, b)] = 1 iff b = a + i·j mod s."""
  i, a, j, b = np.ix_(np.arange(s), np.arange(s), np.arange(m), np.arange(s))
  return ((b - a - i * j) % s == 0).reshape(s * s, m * s).astype(np.int8)


@register
class RamanujanCase1(Placement):
  name = "ramanujan-1"

  def __init__(self, nb_workers: int, replication: int):
    super().__init__(nb_workers, replication)
    s, m = nb_workers // replication, replication
    if s * m != nb_workers or not is_prime(s) or not m < s:
      raise ValueError(f"placement ramanujan-1: needs K = r·s workers with s prime and r < s; K={nb_workers}, "
                       f"r={replication} gives s={nb_workers / replication:g} (e.g. K=15, r=3: s=5)")
    self.s, self.m = s, m
    worker_by_file = block_matrix(s, m)  # rows: files, columns: workers
    self._set_files([np.nonzero(row)[0] for row in worker_by_file])


@register
class RamanujanCase2(Placement):
  name = "ramanujan-2"

  def __init__(self, nb_workers: int, replication: int, m: int | None = None):
    super().__init__(nb_workers, replication)
    s = math.isqrt(nb_workers)
    m = s if m is None else m
    if s * s != nb_workers or replication != s or not is_prime(s) or not (m >= s and m % s == 0):
      raise ValueError(f"placement ramanujan-2: needs K = s² workers with s prime, r = s, and m >= s a multiple "
                       f"of s; got K={nb_workers}, r={replication}, m={m} (e.g. K=25, r=5, m=5)")
    self.s, self.m = s, m
    file_by_worker = block_matrix(s, m)  # rows: workers, columns: files
    self._set_files([np.nonzero(column)[0] for column in file_by_worker.T])
