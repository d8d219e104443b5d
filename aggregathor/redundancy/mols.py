"""ByzShield's placement from mutually orthogonal Latin squares (MOLS).

Konstantinidis & Ramamoorthy, "ByzShield: An Efficient and Robust System for
Distributed Training", MLSys 2021, Section 4. With l prime and r ≤ l − 1,
K = r·l workers and l² files (i, j), file index i·l + j. The squares are
L_k(i, j) = (k·i + j) mod l for k = 1..r; worker (k − 1)·l + s (0-indexed)
holds the files {(i, j) : L_k(i, j) = s}. Each worker holds l files, each
file r copies; two workers of one square (class) share no file, two of
different squares share exactly one.
"""

from __future__ import annotations

from aggregathor.redundancy import register
from aggregathor.redundancy._base import Placement, is_prime


@register
class Mols(Placement):
  name = "mols"

  def __init__(self, nb_workers: int, replication: int):
    super().__init__(nb_workers, replication)
    size = nb_workers // replication
    if size * replication != nb_workers or not is_prime(size) or replication > size - 1:
      raise ValueError(f"placement mols: needs K = r·l workers with l prime and r <= l - 1; K={nb_workers}, "
                       f"r={replication} gives l={nb_workers / replication:g} (e.g. K=15, r=3: l=5)")
    self.size = size
    files = [[] for _ in range(size * size)]
    for k in range(1, replication + 1):
      for i in range(size):
        for j in range(size):
          files[i * size + j].append((k - 1) * size + (k * i + j) % size)
    self._set_files(files)
