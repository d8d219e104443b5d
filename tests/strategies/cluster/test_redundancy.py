"""Redundancy defences across processes: each worker computes its files, the parameter server votes on the copies."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import experiments
from aggregathor import gars, redundancy
from strategies.cluster import worker
from strategies.redundancy import RedundancyPipeline

RNG = np.random.default_rng(1)
GRADIENTS = RNG.normal(size=(25, 6)).astype(np.float32)  # the 25 files of MOLS K=15, r=3
MOLS = redundancy.get("mols", nb_workers=15, replication=3)


def worker_rows(placement: redundancy.Placement, files: np.ndarray, byzantine=(), value: float = 100.0) -> np.ndarray:
  """What the worker processes send: each its files' gradients end to end, a Byzantine one `value` everywhere."""
  rows = np.stack([np.concatenate([files[f] for f in placement.files_of(w)]) for w in range(placement.nb_workers)])
  rows[list(byzantine)] = value
  return rows


def test_the_copies_come_from_the_workers_rows_as_in_local_mode():
  local = RedundancyPipeline(MOLS, "median", 3, "constant", attack_args={"value": 100.0})
  across = RedundancyPipeline(MOLS, "median", 3, across_processes=True)
  assert across.byzantine_workers == local.byzantine_workers and across.files_per_worker == 5
  rows = worker_rows(MOLS, GRADIENTS, local.byzantine_workers)
  np.testing.assert_array_equal(across(tf.constant(rows)).numpy(), local(tf.constant(GRADIENTS)).numpy())
  assert int(across.distorted_files.numpy()) == int(local.distorted_files.numpy()) == 3


def test_absent_workers_vote_for_nothing_and_files_without_a_copy_are_left_out():
  pipeline = RedundancyPipeline(MOLS, "median", 0, across_processes=True)
  rows = worker_rows(MOLS, GRADIENTS)
  rows[0] = np.nan  # whatever an absent worker's row holds, it is not read
  present = tuple(w != 0 for w in range(15))
  expected = gars.get("median").aggregate(tf.constant(GRADIENTS), 0).numpy()
  np.testing.assert_array_equal(pipeline(tf.constant(rows), present).numpy(), expected)
  holders = MOLS.files[0]  # all three copies of file 0 absent: the rule runs on the 24 others
  present = tuple(w not in holders for w in range(15))
  assert pipeline.files_lost(present) == [0]
  expected = gars.get("median").aggregate(tf.constant(GRADIENTS[1:]), 0).numpy()
  np.testing.assert_array_equal(pipeline(tf.constant(rows), present).numpy(), expected)


def test_across_processes_the_attack_is_the_processes_and_the_set_fixed():
  with pytest.raises(ValueError, match="without attack and clip"):
    RedundancyPipeline(MOLS, "median", 3, "constant", across_processes=True)
  with pytest.raises(ValueError, match="fixed processes"):
    RedundancyPipeline(MOLS, "median", 3, byzantine_set="random", across_processes=True)


def experiment_job(index: int, placement: redundancy.Placement, **fields) -> dict:
  dimension = sum(int(np.prod(v.shape)) for v in experiments.get("digits").build_model().trainable_variables)
  job = {"run": "test", "kind": "experiment", "seed": 0, "worker": index, "nb_workers": placement.nb_workers,
         "nb_decl_byz_workers": 0, "nb_real_byz_workers": 0, "aggregator": "median", "aggregator_args": {},
         "gradient_clip": None, "momentum": 0.0, "dampening": 0.0, "momentum_at": "update", "dimension": dimension,
         "experiment": "digits", "experiment_args": {}, "label_flip": False, "l1_regularize": 0.0, "udp": None,
         "l2_regularize": 0.0, "local_steps": 1, "learning_rate": "fixed", "learning_rate_args": {},
         "redundancy": {"placement": "mols", "replication": 3, "args": {}, "file_f": 3}, "compression": None, **fields}
  return worker.check_job(job)


def test_a_worker_process_computes_its_files_end_to_end():
  # Workers 0 and 5 are of different Latin squares: they share exactly one file, whose gradient they agree on.
  jobs = [worker.WorkerJob(experiment_job(index, MOLS), None, {}) for index in (0, 5)]
  d = jobs[0].dimension
  weights = np.concatenate([np.reshape(v.numpy(), [-1]) for v in jobs[0].variables])
  rows = [job.compute(3, weights)[0] for job in jobs]
  assert all(row.shape == (5 * d,) for row in rows)
  (shared,) = set(jobs[0].files) & set(jobs[1].files)
  segments = [row.reshape(5, d)[job.files.index(shared)] for row, job in zip(rows, jobs)]
  np.testing.assert_array_equal(segments[0], segments[1])
  others = [row.reshape(5, d)[[i for i, f in enumerate(job.files) if f != shared]] for row, job in zip(rows, jobs)]
  assert not np.array_equal(others[0][0], others[1][0])  # different files, different data
  rogue = worker.WorkerJob(experiment_job(0, MOLS, nb_real_byz_workers=3), "constant", {"value": 7.0})
  np.testing.assert_array_equal(rogue.compute(3, weights)[0], np.full(5 * d, 7.0, np.float32))


def test_detox_on_worker_processes_outvotes_a_byzantine_process_and_trains_as_local_mode(make_cluster):
  # DETOX, 3 workers in one group of 3: worker 2, a real Byzantine process, loses every vote to the two honest
  # copies, so that the run is the unattacked local one, step for step.
  cluster = make_cluster(3)
  cluster.start_workers({2: ["--attack", "empire", "--attack-args", "factor:10"]})
  common = ["--experiment", "digits", "--redundancy", "detox", "--replication", "3", "--aggregator", "average",
            "--max-steps", "20", "--evaluation-delta", "10", "--checkpoint-dir", "-", "--no-wait"]
  ps = cluster.start_ps(*common, "--nb-real-byz-workers", "1", "--byzantine-set", "fixed", "--byzantine-workers",
                        "2", "--study-period", "5", "--study-file", "study.tsv", "--evaluation-file", "cluster.tsv")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  local = cluster.start_local(*common, "--evaluation-file", "local.tsv")
  assert local.wait(timeout=300) == 0, (cluster.root / "local.log").read_text()[-3000:]
  lines = [(cluster.root / name).read_text().split("\t", 1)[1] for name in ("cluster.tsv", "local.tsv")]
  assert lines[0] == lines[1]  # the step, accuracy and loss, to the last digit
  header, *rows = (cluster.root / "study.tsv").read_text().splitlines()
  column = header.lstrip("# ").split("\t").index("redundancy/distorted-files")
  assert [float(row.split("\t")[column]) for row in rows] == [0.0] * 4
  ps_log = (cluster.root / "ps.log").read_text()
  assert "Refused" not in ps_log and "failed step" not in ps_log  # the rogue's rows came, and lost the vote
