"""strategies.redundancy: the pipeline that votes on the files' copies, and DETOX against ByzShield in training."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import gars, redundancy
from strategies.redundancy import RedundancyPipeline

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(0)
GRADIENTS = tf.constant(RNG.normal(size=(25, 6)).astype(np.float32))  # the 25 files of MOLS K=15, r=3
MOLS = redundancy.get("mols", nb_workers=15, replication=3)


def test_without_byzantine_workers_the_rule_sees_the_files():
  pipeline = RedundancyPipeline(MOLS, "median")
  np.testing.assert_allclose(pipeline(GRADIENTS).numpy(), gars.get("median").aggregate(GRADIENTS, 0).numpy())
  assert int(pipeline.distorted_files.numpy()) == 0


def test_the_worst_set_distorts_c_max_files_which_the_rule_sees_as_the_attack():
  pipeline = RedundancyPipeline(MOLS, "median", 3, "constant", attack_args={"value": 100.0})
  assert pipeline.byzantine_workers == MOLS.worst_case(3).workers and pipeline.file_f == 3  # c_max(3) = 3
  aggregated = pipeline(GRADIENTS).numpy()
  distorted = [f for f, workers in enumerate(MOLS.files) if len(set(workers) & set(pipeline.byzantine_workers)) >= 2]
  assert len(distorted) == 3 and int(pipeline.distorted_files.numpy()) == 3
  voted = GRADIENTS.numpy().copy()
  voted[distorted] = 100.0
  np.testing.assert_allclose(aggregated, np.median(voted, axis=0), rtol=1e-6)


def test_the_study_records_the_distorted_files_beside_the_metrics():
  pipeline = RedundancyPipeline(MOLS, "krum", 3, "constant", attack_args={"value": 100.0}, study_period=1)
  pipeline(GRADIENTS)
  assert "redundancy/distorted-files" in pipeline.study.names and not pipeline.study.selects
  assert pipeline.study.values["redundancy/distorted-files"].numpy() == 3.0
  assert np.isfinite(pipeline.study.values["defense/norm"].numpy())


def test_random_sets_are_drawn_each_step_and_fixed_ones_checked():
  pipeline = RedundancyPipeline(MOLS, "median", 5, "constant", byzantine_set="random", attack_args={"value": 9.0})
  counts = {int(pipeline.distorted_files.numpy()) for _ in range(12) if pipeline(GRADIENTS) is not None}
  assert len(counts) > 1 and max(counts) <= MOLS.worst_case(5).distorted
  fixed = RedundancyPipeline(MOLS, "median", 2, "constant", byzantine_set="fixed", byzantine_workers=[0, 5])
  fixed(GRADIENTS)
  assert int(fixed.distorted_files.numpy()) == MOLS.distorted([0, 5])
  with pytest.raises(ValueError, match="must name 2 distinct workers"):
    RedundancyPipeline(MOLS, "median", 2, "constant", byzantine_set="fixed", byzantine_workers=[0, 0])
  with pytest.raises(ValueError, match="need an attack"):
    RedundancyPipeline(MOLS, "median", 2)


def test_detox_attack_sets():
  detox = redundancy.get("detox", nb_workers=15, replication=3)
  benign = RedundancyPipeline(detox, "median", 4, "constant", byzantine_set="benign")
  assert benign.byzantine_workers == (0, 3, 6, 9) and benign.file_f == 2  # the worst case still bounds f
  benign(tf.constant(RNG.normal(size=(5, 6)).astype(np.float32)))
  assert int(benign.distorted_files.numpy()) == 0
  whole = RedundancyPipeline(detox, "median", 4, "constant", byzantine_set="whole-group")
  assert whole.byzantine_workers == (0, 1, 2, 3)
  with pytest.raises(ValueError, match="use it with --redundancy detox"):
    RedundancyPipeline(MOLS, "median", 2, "constant", byzantine_set="benign")


def test_buckets_average_the_voted_files_before_the_rule():
  # With the average, 5 equal buckets of the 25 voted files average to their mean, whatever the order.
  pipeline = RedundancyPipeline(MOLS, "average", buckets=5)
  np.testing.assert_allclose(pipeline(GRADIENTS).numpy(), GRADIENTS.numpy().mean(axis=0), rtol=1e-5, atol=1e-6)
  assert RedundancyPipeline(MOLS, "median", 2, "constant", buckets=5).file_f == 1  # c_max(2) = 1 bucket
  with pytest.raises(ValueError, match="median needs n >= 2f\\+1, got n=5, f=5"):
    RedundancyPipeline(MOLS, "median", 5, "constant", buckets=5)  # 8 distorted files may spoil all 5 buckets


def runner_accuracy(tmp_path: pathlib.Path, *args: str) -> float:
  evaluation = tmp_path / f"eval-{len(list(tmp_path.iterdir()))}.tsv"
  result = subprocess.run(
      [sys.executable, str(REPO_ROOT / "runner.py"), "--experiment", "digits", *args, "--max-steps", "300",
       "--evaluation-delta", "1000", "--evaluation-period", "-1", "--checkpoint-period", "-1", "--summary-period",
       "-1", "--log-period", "-1", "--checkpoint-dir", "-", "--evaluation-file", str(evaluation)],
      env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True,
      timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return float(re.search(r"accuracy:(\S+)", evaluation.read_text())[1])


def test_byzshield_is_hurt_less_than_detox_by_the_worst_case_attack(tmp_path):
  # K=15 workers, r=3, q=5 Byzantine workers in each placement's worst set, all copies sending -10·mean:
  # DETOX loses 2 of its 5 files (40%), ByzShield's MOLS 8 of its 25 (32%).
  common = ["--nb-workers", "15", "--replication", "3", "--nb-real-byz-workers", "5", "--attack", "empire",
            "--attack-args", "factor:10", "--aggregator", "median"]
  byzshield = runner_accuracy(tmp_path, *common, "--redundancy", "mols")
  detox = runner_accuracy(tmp_path, *common, "--redundancy", "detox")
  assert byzshield > 0.4 and byzshield > detox + 0.05, (byzshield, detox)
