"""The redundancy placements: their structure, and the worst cases of the ByzShield paper's examples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aggregathor import redundancy
from aggregathor.redundancy import _base

# c_max(q), the most files q Byzantine workers distort, for the ByzShield paper's examples, as its code tabulates
# them (K=15, r=3: MOLS, and Ramanujan case 1; K=25, r=5: Ramanujan case 2).
C_MAX = {
    ("mols", 15, 3): [0, 0, 1, 3, 5, 8, 12, 14, 17],
    ("ramanujan-1", 15, 3): [0, 0, 1, 3, 5, 8, 12, 14, 17],
    ("ramanujan-2", 25, 5): [0, 0, 0, 1, 1, 2, 4, 5, 7, 9, 12, 14, 17],
}
EXAMPLES = [("detox", 15, 3), ("detox", 12, 4), ("mols", 15, 3), ("mols", 35, 5), ("mols", 14, 2),
            ("ramanujan-1", 15, 3), ("ramanujan-1", 14, 2), ("ramanujan-2", 25, 5), ("ramanujan-2", 9, 3)]


def brute_force(placement, q: int) -> int:
  return max(placement.distorted(workers) for workers in itertools.combinations(range(placement.nb_workers), q))


def test_registered_names():
  assert redundancy.names() == ["detox", "mols", "ramanujan-1", "ramanujan-2"]
  with pytest.raises(ValueError, match="unknown placement 'mol' \\(did you mean 'mols'\\?\\)"):
    redundancy.get("mol", nb_workers=15, replication=3)


@pytest.mark.parametrize("name, workers, replication", EXAMPLES)
def test_every_file_has_r_copies_and_every_worker_its_load(name, workers, replication):
  placement = redundancy.get(name, nb_workers=workers, replication=replication)
  assert all(len(copies) == replication for copies in placement.files)
  assert len(set(placement.loads.tolist())) == 1  # the same load for every worker
  assert placement.loads.sum() == placement.nb_files * replication
  assert all(len(set(copies)) == replication and all(0 <= w < workers for w in copies) for copies in placement.files)


@pytest.mark.parametrize("workers, replication", [(15, 3), (35, 5), (14, 2), (21, 3)])
def test_mols_classes(workers, replication):
  placement = redundancy.get("mols", nb_workers=workers, replication=replication)
  size = workers // replication
  assert placement.nb_files == size * size and set(placement.loads.tolist()) == {size}
  shared = placement.incidence.astype(int) @ placement.incidence.T.astype(int)
  for a, b in itertools.combinations(range(workers), 2):
    same_class = a // size == b // size
    assert shared[a, b] == (0 if same_class else 1), (a, b)


@pytest.mark.parametrize("workers, replication", [(15, 3), (35, 5), (21, 3)])
def test_mols_second_eigenvalue_is_one_over_r(workers, replication):
  # H = incidence / sqrt(load · r), the normalised biadjacency: H Hᵀ has eigenvalues 1 and then 1/r.
  placement = redundancy.get("mols", nb_workers=workers, replication=replication)
  load = workers // replication
  gram = placement.incidence.astype(float) @ placement.incidence.T.astype(float) / (load * replication)
  eigenvalues = np.sort(np.linalg.eigvalsh(gram))[::-1]
  assert eigenvalues[0] == pytest.approx(1.0)
  assert eigenvalues[1] == pytest.approx(1.0 / replication)


def test_mols_files_follow_the_latin_squares():
  placement = redundancy.get("mols", nb_workers=15, replication=3)
  # Worker (k-1)·l + s holds {(i, j) : (k·i + j) mod l = s}; file (i, j) is i·l + j.
  for k, s in itertools.product(range(1, 4), range(5)):
    expected = {i * 5 + j for i in range(5) for j in range(5) if (k * i + j) % 5 == s}
    assert set(placement.files_of((k - 1) * 5 + s)) == expected


@pytest.mark.parametrize("name, workers, replication", sorted(C_MAX))
def test_worst_cases_of_the_papers_examples(name, workers, replication):
  placement = redundancy.get(name, nb_workers=workers, replication=replication)
  for q, expected in enumerate(C_MAX[(name, workers, replication)]):
    worst = placement.worst_case(q)
    assert worst.exact and worst.distorted == expected, q
    assert len(worst.workers) == q and placement.distorted(worst.workers) == expected


@pytest.mark.parametrize("q", range(0, 6))
def test_exhaustive_search_matches_brute_force(q):
  placement = redundancy.get("mols", nb_workers=14, replication=2)
  assert placement.worst_case(q).distorted == brute_force(placement, q)


@pytest.mark.parametrize("workers, replication", [(15, 3), (12, 4), (20, 5), (12, 3)])
def test_detox_worst_fraction_and_its_attacks(workers, replication):
  placement = redundancy.get("detox", nb_workers=workers, replication=replication)
  majority = (replication + 1) // 2 if replication % 2 else replication // 2 + 1
  groups = workers // replication
  for q in range(workers + 1):
    expected = min(q // majority, groups)
    assert placement.worst_case(q).distorted == expected
    # DETOX's fraction ⌊q/r'⌋ / (K/r), reached by its "worst" attack.
    assert placement.distorted(placement.worst_attack(q)) == expected
    assert len(set(placement.worst_attack(q))) == q
    if q <= groups:
      assert placement.distorted(placement.benign_attack(q)) == (q if majority == 1 else 0)
    assert placement.whole_group_attack(q) == tuple(range(q))


def test_detox_leftover_workers_join_the_last_group():
  placement = redundancy.get("detox", nb_workers=7, replication=3)
  assert placement.files == ((0, 1, 2), (3, 4, 5, 6))


def test_heuristic_beyond_the_exhaustive_limit_is_a_lower_bound(monkeypatch):
  placement = redundancy.get("ramanujan-2", nb_workers=25, replication=5)
  monkeypatch.setattr(_base, "EXHAUSTIVE_LIMIT", 10)
  worst = placement.worst_case(9)
  assert not worst.exact and len(worst.workers) == 9
  assert placement.distorted(worst.workers) == worst.distorted
  assert 1 <= worst.distorted <= C_MAX[("ramanujan-2", 25, 5)][9]


@pytest.mark.parametrize("name, workers, replication, message", [
    ("mols", 16, 3, "needs K = r·l workers with l prime"),
    ("mols", 15, 5, "needs K = r·l workers with l prime and r <= l - 1"),
    ("ramanujan-1", 25, 5, "s prime and r < s"),  # s = 5 = r
    ("ramanujan-1", 18, 3, "s prime"),  # s = 6
    ("ramanujan-2", 24, 5, "K = s² workers"),
    ("ramanujan-2", 25, 4, "r = s"),
    ("detox", 3, 4, "replication 4 exceeds the 3 workers"),
])
def test_bad_parameters_say_what_is_needed(name, workers, replication, message):
  with pytest.raises(ValueError, match=message):
    redundancy.get(name, nb_workers=workers, replication=replication)


def test_ramanujan_case_2_with_more_files():
  placement = redundancy.get("ramanujan-2", nb_workers=9, replication=3, m=6)
  assert placement.nb_files == 18 and set(placement.loads.tolist()) == {6}
  assert all(len(copies) == 3 for copies in placement.files)
