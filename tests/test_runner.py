"""runner.py: the command line, in process, on the embedded digits experiment (no data files).

Every run is a few steps of a tiny MLP, with the time-based triggers off so that
what is written depends on step counts only.
"""

from __future__ import annotations

import glob
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

import runner
from experiments.digits import Digits
from strategies import provenance, training

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Time-based triggers off: outputs then depend on the step counts alone.
QUIET = ["--evaluation-period", "-1", "--summary-period", "-1", "--checkpoint-period", "-1", "--log-period", "-1"]
EVALUATION_LINE = re.compile(r"(\d+\.\d{3})\t(\d+)\taccuracy:(\S+)\tloss:(\S+)")


@pytest.fixture(autouse=True, scope="module")
def started_runtime():
  """Starts TensorFlow with conftest's logical CPUs, which the runs then reuse.

  Until an op runs, the runtime is not started and configure_devices(n) would
  re-split the CPU into n devices, leaving fewer than later tests expect.
  """
  assert len(tf.config.list_logical_devices("CPU")) >= 5


def _run(capsys, *args: str) -> tuple[int, str, str]:
  """runner.run on the digits experiment; (status, stdout, stderr)."""
  status = runner.run(["--experiment", "digits", *QUIET, *args])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def _train(capsys, *args: str) -> str:
  """A run that must succeed; its standard output."""
  status, out, err = _run(capsys, *args)
  assert status == 0, err[-3000:]
  return out


def _evaluations(path: pathlib.Path) -> list[tuple[float, int, float, float]]:
  """(walltime, step, accuracy, loss) per line; every line must match the format exactly."""
  rows = []
  for line in path.read_text(encoding="utf-8").splitlines():
    match = EVALUATION_LINE.fullmatch(line)
    assert match, f"bad evaluation line {line!r}"
    rows.append((float(match[1]), int(match[2]), float(match[3]), float(match[4])))
  return rows


@pytest.fixture
def built_models(monkeypatch) -> list:
  """The models the runs build, in order, to look at their weights after a run."""
  models = []
  original = Digits.build_model

  def build_model(self):
    model = original(self)
    models.append(model)
    return model

  monkeypatch.setattr(Digits, "build_model", build_model)
  return models


def _weights(model) -> list[np.ndarray]:
  return [np.array(v.numpy()) for v in model.trainable_variables]


# Bad command lines: refused before any training step.

def _usage_error(capsys, tmp_path, *args: str) -> str:
  """Runs a command line argparse must refuse; returns its message."""
  evaluation = tmp_path / "eval.tsv"
  with pytest.raises(SystemExit) as raised:
    runner.run(["--evaluation-file", str(evaluation), *args])
  assert raised.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("usage: runner.py") and "runner.py: error: " in err
  assert not evaluation.exists()
  return err.split("runner.py: error: ", 1)[1]


def _bad_argument(capsys, tmp_path, *args: str) -> str:
  """Runs a command line with a bad argument found while building the run; returns its message."""
  evaluation = tmp_path / "eval.tsv"
  status, out, err = _run(capsys, "--evaluation-file", str(evaluation), "--max-steps", "2", *args)
  assert status == 2, err[-3000:]
  assert "runner.py: error: " in err and "Traceback" not in err
  assert "steps/s" not in out and not evaluation.exists()  # no training step ran
  return err.split("runner.py: error: ", 1)[1]


def test_unknown_aggregator_suggests_and_lists(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--aggregator", "krun", "--nb-workers", "5", "--nb-decl-byz-workers", "1")
  assert "unknown aggregation rule 'krun'" in message and "did you mean 'krum'?" in message
  known = message.split("known: ", 1)[1].split("\n")[0].split(", ")
  assert {"average", "median", "krum", "multi-krum"} <= set(known)


def test_unknown_attack_suggests_and_lists(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--nb-workers", "3", "--nb-real-byz-workers", "1", "--attack", "litle")
  assert "unknown attack 'litle'" in message and "did you mean 'little'?" in message
  assert "nan" in message.split("known: ", 1)[1].split(", ")


def test_unknown_aggregator_argument(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--aggregator", "multi-krum", "--aggregator-args", "k:3",
                          "--nb-workers", "5", "--nb-decl-byz-workers", "1")
  assert "--aggregator-args" in message and "unknown argument(s) k" in message and "accepted: m" in message


def test_aggregator_argument_of_the_wrong_type(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--aggregator", "multi-krum", "--aggregator-args", "m:abc",
                          "--nb-workers", "5", "--nb-decl-byz-workers", "1")
  assert "multi-krum" in message and "m as an int" in message and "'abc'" in message


def test_as_many_byzantine_as_workers(capsys, tmp_path):
  message = _usage_error(capsys, tmp_path, "--nb-workers", "3", "--nb-real-byz-workers", "3", "--attack", "nan")
  assert "--nb-real-byz-workers (3)" in message and "--nb-workers (3)" in message


def test_attack_with_label_flip(capsys, tmp_path):
  message = _usage_error(capsys, tmp_path, "--nb-workers", "3", "--nb-real-byz-workers", "1", "--attack", "nan",
                         "--label-flip")
  assert "--label-flip" in message and "--attack" in message


def test_attack_args_without_attack(capsys, tmp_path):
  message = _usage_error(capsys, tmp_path, "--nb-workers", "3", "--attack-args", "factor:2")
  assert "--attack-args given without --attack" in message


def test_study_file_without_study_period(capsys, tmp_path):
  message = _usage_error(capsys, tmp_path, "--study-file", str(tmp_path / "study.tsv"))
  assert "--study-file needs --study-period > 0" in message


def test_krum_with_too_few_workers_names_the_condition(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--aggregator", "krum", "--nb-workers", "4", "--nb-decl-byz-workers", "1")
  assert "krum needs n >= 2f+3, got n=4, f=1" in message


def test_unknown_experiment_argument(capsys, tmp_path):
  message = _bad_argument(capsys, tmp_path, "--experiment-args", "batch-sise:8")
  assert "experiment digits" in message and "unknown argument(s) batch-sise" in message
  assert "batch-size" in message.split("accepted: ", 1)[1]


@pytest.mark.parametrize("pair, expected", [
    ("momentun:0.9", "unknown argument(s) momentun"),
    ("momentum:fast", "momentum expects a number"),
])
def test_bad_optimizer_argument(capsys, tmp_path, pair, expected):
  message = _bad_argument(capsys, tmp_path, "--optimizer", "sgd", "--optimizer-args", pair)
  assert "--optimizer-args" in message and expected in message


def test_missing_idx_directory_names_the_path(capsys, tmp_path):
  missing = tmp_path / "no-such-mnist"
  message = _bad_argument(capsys, tmp_path, "--experiment", "mnist", "--experiment-args", f"idx-dir:{missing}",
                          "--nb-workers", "2")
  assert str(missing) in message and "train-images-idx3-ubyte" in message


# Evaluation file and throughput.

def test_evaluation_file_every_delta_steps_and_throughput(capsys, tmp_path):
  evaluation = tmp_path / "out" / "eval.tsv"
  out = _train(capsys, "--nb-workers", "3", "--max-steps", "10", "--evaluation-delta", "5",
               "--evaluation-file", str(evaluation))
  rows = _evaluations(evaluation)
  assert [step for _, step, _, _ in rows] == [5, 10]
  for walltime, _, accuracy, loss in rows:
    assert abs(walltime - time.time()) < 600
    assert 0.0 <= accuracy <= 1.0 and math.isfinite(loss) and loss > 0
  assert rows[0][0] <= rows[1][0]
  assert re.search(r"^Trained 10 steps in \d+\.\d s: \d+\.\d\d steps/s$", out, re.MULTILINE), out


# Checkpoints.

def test_resume_from_checkpoint(capsys, tmp_path, built_models):
  checkpoints, evaluation = tmp_path / "checkpoints", tmp_path / "eval.tsv"
  common = ["--nb-workers", "3", "--evaluation-delta", "5", "--evaluation-file", str(evaluation),
            "--checkpoint-dir", str(checkpoints)]
  # Stop at 6 without the final evaluation, so that 6 + 4 evaluates at the steps 10 in one go does.
  out = _train(capsys, *common, "--max-steps", "6", "--no-wait")
  assert "Trained 6 steps" in out
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-6")
  saved = _weights(built_models[-1])
  first = _evaluations(evaluation)
  assert [step for _, step, _, _ in first] == [5]

  # --max-steps counts additional steps: a rerun with 4 trains steps 7 to 10.
  out = _train(capsys, *common, "--max-steps", "4")
  assert "Trained 4 steps" in out  # from step 6, not from 0
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-10")
  resumed = _evaluations(evaluation)
  assert resumed[:1] == first and [step for _, step, _, _ in resumed] == [5, 10]
  resumed_weights = _weights(built_models[-1])

  # The same 10 steps in one go: evaluations at the same steps, with the same results.
  again = tmp_path / "again.tsv"
  _train(capsys, "--nb-workers", "3", "--evaluation-delta", "5", "--evaluation-file", str(again), "--max-steps", "10")
  in_one_go = _evaluations(again)
  assert [row[1:] for row in in_one_go] == [row[1:] for row in resumed]
  for resumed_weight, weight in zip(resumed_weights, _weights(built_models[-1]), strict=True):
    np.testing.assert_allclose(resumed_weight, weight, rtol=1e-5, atol=1e-6)


def test_resumed_run_evaluates_each_step_once(capsys, tmp_path):
  # A run killed after evaluating steps past its last checkpoint (here: lines written by hand, the
  # last cut short by the kill) resumes from the checkpoint and evaluates those steps again, once.
  checkpoints, evaluation = tmp_path / "checkpoints", tmp_path / "eval.tsv"
  common = ["--nb-workers", "3", "--evaluation-delta", "2", "--evaluation-file", str(evaluation),
            "--checkpoint-dir", str(checkpoints)]
  _train(capsys, *common, "--max-steps", "4")  # evaluates 2, and 4 at the end
  with open(evaluation, "a", encoding="utf-8") as file:
    file.write("1.000\t6\taccuracy:0.5\tloss:1\n1.000\t8\taccu")
  _train(capsys, *common, "--max-steps", "6", "--no-wait")
  assert [step for _, step, _, _ in _evaluations(evaluation)] == [2, 4, 6, 8]


def test_each_run_leaves_its_provenance_in_the_checkpoint_dir(capsys, tmp_path):
  checkpoints = tmp_path / "checkpoints"
  common = ["--nb-workers", "3", "--seed", "7", "--checkpoint-dir", str(checkpoints), "--no-wait"]
  _train(capsys, *common, "--max-steps", "2")
  _train(capsys, *common, "--max-steps", "1")
  first, resumed = provenance.read(checkpoints)
  assert first["start_step"] == 0 and resumed["start_step"] == 2 and first["seed"] == 7
  assert first["configuration"]["nb_workers"] == 3 and first["configuration"]["max_steps"] == 2
  assert first["configuration"]["checkpoint_dir"] == str(checkpoints)
  assert {"python", "numpy", "keras"} <= set(first["versions"])
  events = glob.glob(os.path.join(checkpoints, "**", "events.out.tfevents.*"), recursive=True)
  tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value}
  assert "run/provenance" in tags  # the configuration as text in TensorBoard


def test_fresh_run_keeps_an_existing_evaluation_file(capsys, tmp_path):
  evaluation = tmp_path / "eval.tsv"
  evaluation.write_text("1.000\t50\taccuracy:0.5\tloss:1\n", encoding="utf-8")
  _train(capsys, "--nb-workers", "3", "--evaluation-delta", "2", "--evaluation-file", str(evaluation),
         "--max-steps", "3", "--no-wait")
  assert [step for _, step, _, _ in _evaluations(evaluation)] == [50, 2]


@pytest.mark.parametrize("changed", [["--aggregator", "centered-clipping", "--nb-decl-byz-workers", "1"],
                                     ["--momentum", "0.9", "--momentum-at", "worker"]])
def test_resume_with_another_setup_is_a_clear_error(capsys, tmp_path, changed):
  checkpoints = str(tmp_path / "checkpoints")
  _train(capsys, "--nb-workers", "3", "--max-steps", "1", "--no-wait", "--checkpoint-dir", checkpoints)
  status, out, err = _run(capsys, "--nb-workers", "3", "--max-steps", "2", "--no-wait", "--checkpoint-dir",
                          checkpoints, *changed)
  assert status == 2 and "steps/s" not in out
  assert "runner.py: error: cannot resume from " in err and "pass a new --checkpoint-dir" in err
  assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-1")  # nothing overwritten


def test_corrupt_checkpoint_is_a_clear_error_naming_the_earlier_ones(capsys, tmp_path):
  checkpoints = tmp_path / "checkpoints"
  common = ["--nb-workers", "3", "--no-wait", "--checkpoint-dir", str(checkpoints), "--checkpoint-delta", "1"]
  _train(capsys, *common, "--max-steps", "2")
  (data,) = checkpoints.glob("ckpt-2.data-*")
  data.write_bytes(data.read_bytes()[:100])  # truncated, as by a full disk
  status, out, err = _run(capsys, *common, "--max-steps", "3")
  assert status == 2 and "steps/s" not in out
  assert f"runner.py: error: cannot read {checkpoints / 'ckpt-2'}, truncated or corrupt" in err
  assert "to an earlier one (ckpt-1)" in err


def test_resume_keeps_the_command_line_learning_rate(capsys, tmp_path):
  checkpoints = str(tmp_path / "checkpoints")
  _train(capsys, "--nb-workers", "2", "--max-steps", "1", "--no-wait", "--checkpoint-dir", checkpoints)
  _train(capsys, "--nb-workers", "2", "--max-steps", "1", "--no-wait", "--checkpoint-dir", checkpoints,
         "--learning-rate-args", "initial-rate:0.5")
  reader = tf.train.load_checkpoint(checkpoints)
  assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2
  # Not the default 0.05 the first run saved.
  assert reader.get_tensor("optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(0.5)


# Study metrics.

def _study_table(path: pathlib.Path) -> tuple[list[str], list[dict[str, float]]]:
  """The study CSV's columns (from its '# ' header line) and its rows, by column."""
  header, *lines = path.read_text(encoding="utf-8").splitlines()
  assert header.startswith("# ")
  columns = header[2:].split("\t")
  return columns, [dict(zip(columns, map(float, line.split("\t")), strict=True)) for line in lines]


def test_study_file_and_summaries(capsys, tmp_path):
  study, summaries = tmp_path / "study.tsv", tmp_path / "runs"
  _train(capsys, "--aggregator", "krum", "--nb-workers", "5", "--nb-decl-byz-workers", "1", "--nb-real-byz-workers",
         "1", "--attack", "nan", "--max-steps", "6", "--study-period", "2", "--study-file", str(study),
         "--summary-dir", str(summaries), "--no-wait")
  columns, rows = _study_table(study)
  assert columns[:3] == ["step", "walltime", "loss"]
  assert columns[-5:] == [f"selected/worker-{i:02d}" for i in range(5)]
  assert "cosine/honest-attack" in columns and "params/distance-from-init" in columns
  assert [row["step"] for row in rows] == [2, 4, 6]
  for row in rows:
    selected = [row[f"selected/worker-{i:02d}"] for i in range(5)]
    # Krum keeps one worker, never the NaN-sending Byzantine one (the last).
    assert sorted(selected) == [0, 0, 0, 0, 1] and selected[4] == 0
    assert math.isnan(row["attack/norm"]) and math.isfinite(row["honest/norm"])
    assert math.isfinite(row["loss"])
  distances = [row["params/distance-from-init"] for row in rows]
  assert 0 < distances[0] < distances[-1]  # the weights move away from their initial values

  events = glob.glob(os.path.join(summaries, "events.out.tfevents.*"))
  assert events
  tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value}
  assert {"selection-rate/worker-00", "selection-rate/worker-04", "cosine/honest-defense"} <= tags


def test_resumed_study_measures_the_distance_from_the_first_step(capsys, tmp_path):
  checkpoints, study = tmp_path / "checkpoints", tmp_path / "study.tsv"
  common = ["--nb-workers", "3", "--study-period", "2", "--checkpoint-dir", str(checkpoints), "--no-wait"]
  _train(capsys, *common, "--max-steps", "4", "--study-file", str(study))
  _train(capsys, *common, "--max-steps", "4", "--study-file", str(study))
  again = tmp_path / "again.tsv"
  _train(capsys, "--nb-workers", "3", "--study-period", "2", "--max-steps", "8", "--no-wait",
         "--study-file", str(again))
  resumed, in_one_go = _study_table(study)[1], _study_table(again)[1]
  assert [row["step"] for row in resumed] == [row["step"] for row in in_one_go] == [2, 4, 6, 8]
  # Measured from the weights of step 0, not from the resumed step 4.
  np.testing.assert_allclose([row["params/distance-from-init"] for row in resumed],
                             [row["params/distance-from-init"] for row in in_one_go], rtol=1e-4)


def test_resume_with_the_study_from_a_checkpoint_without_it(capsys, caplog, tmp_path):
  checkpoints, study = tmp_path / "checkpoints", tmp_path / "study.tsv"
  common = ["--nb-workers", "3", "--checkpoint-dir", str(checkpoints), "--no-wait"]
  _train(capsys, *common, "--max-steps", "4")
  assert not training.has_initial_weights(tf.train.latest_checkpoint(str(checkpoints)))
  status, _, err = _run(capsys, *common, "--max-steps", "2", "--study-period", "2", "--study-file", str(study))
  assert status == 0, err[-3000:]
  assert "holds no initial weights" in caplog.text
  _, rows = _study_table(study)
  assert [row["step"] for row in rows] == [6]
  assert 0 < rows[0]["params/distance-from-init"]
  # From now on the checkpoints keep the weights of the resumed step, for later resumes.
  assert training.has_initial_weights(tf.train.latest_checkpoint(str(checkpoints)))


def test_centered_clipping_center_is_checkpointed(capsys, tmp_path):
  def center_after(steps: list[int], name: str) -> np.ndarray:
    checkpoints = tmp_path / name
    for max_steps in steps:  # each run trains that many more steps
      _train(capsys, "--aggregator", "centered-clipping", "--nb-workers", "3", "--nb-decl-byz-workers", "1",
             "--max-steps", str(max_steps), "--checkpoint-dir", str(checkpoints), "--no-wait")
    reader = tf.train.load_checkpoint(str(checkpoints))
    return reader.get_tensor("pipeline/rule_center/.ATTRIBUTES/VARIABLE_VALUE")

  resumed = center_after([2, 2], "resumed")
  assert resumed.shape == (64 * 100 + 100 + 100 * 10 + 10,) and np.any(resumed != 0)
  # The resumed run started from the saved center, not from zeros: as if run in one go.
  np.testing.assert_allclose(resumed, center_after([4], "in-one-go"), rtol=1e-5, atol=1e-7)


# Training options: each runs and evaluates to a finite loss.

def _finite_run(capsys, tmp_path, *args: str) -> list[tuple[float, int, float, float]]:
  evaluation = tmp_path / "eval.tsv"
  out = _train(capsys, "--max-steps", "3", "--evaluation-file", str(evaluation), *args)
  assert "Trained 3 steps" in out
  rows = _evaluations(evaluation)
  assert [step for _, step, _, _ in rows] == [3] and math.isfinite(rows[0][3])
  return rows


@pytest.mark.parametrize("place", ["update", "worker", "server"])
def test_momentum_placement(capsys, tmp_path, place):
  checkpoints = tmp_path / "checkpoints"
  _finite_run(capsys, tmp_path, "--nb-workers", "3", "--momentum", "0.9", "--momentum-at", place,
              "--checkpoint-dir", str(checkpoints))
  reader = tf.train.load_checkpoint(str(checkpoints))
  update = reader.get_tensor("pipeline/update_momentum/.ATTRIBUTES/VARIABLE_VALUE")
  workers = reader.get_tensor("pipeline/worker_momentum/.ATTRIBUTES/VARIABLE_VALUE")
  d = 64 * 100 + 100 + 100 * 10 + 10  # the 64-100-10 MLP
  if place == "update":
    assert update.shape == (d,) and np.any(update != 0) and workers.shape == (0, d)
  else:
    # One momentum per worker, kept by the server; the update momentum stays unused.
    assert workers.shape == (3, d) and np.all(np.any(workers != 0, axis=1)) and not np.any(update)


def test_gradient_clip(capsys, tmp_path):
  study = tmp_path / "study.tsv"
  _finite_run(capsys, tmp_path, "--nb-workers", "3", "--gradient-clip", "0.01", "--study-period", "1",
              "--study-file", str(study))
  _, rows = _study_table(study)
  assert len(rows) == 3
  for row in rows:
    # What the workers computed is far above the clip; what they send is at it.
    assert row["sampled/norm"] > 0.1 and row["honest/norm"] == pytest.approx(0.01, rel=1e-4)


def test_label_flip(capsys, tmp_path):
  _finite_run(capsys, tmp_path, "--nb-workers", "3", "--nb-real-byz-workers", "1", "--label-flip",
              "--aggregator", "median", "--nb-decl-byz-workers", "1")


def test_chain_with_stage_argument_under_a_searching_attack(capsys, tmp_path):
  _finite_run(capsys, tmp_path, "--aggregator", "nnm>multi-krum", "--aggregator-args", "m:3", "--nb-workers", "7",
              "--nb-decl-byz-workers", "1", "--nb-real-byz-workers", "1", "--attack", "optimal-little",
              "--attack-args", "points:3", "rounds:1")


def test_local_steps(capsys, tmp_path):
  _finite_run(capsys, tmp_path, "--nb-workers", "3", "--local-steps", "2")


def test_trace_of_a_run_shorter_than_the_profiled_steps(capsys, tmp_path):
  # Steps 5-9 are profiled; a run that ends at 7 still writes the trace of steps 5-7.
  summaries = tmp_path / "runs"
  _train(capsys, "--nb-workers", "2", "--max-steps", "7", "--no-wait", "--trace", "--summary-dir", str(summaries))
  assert list(summaries.glob("plugins/profile/*/*.xplane.pb"))


# Output triggers, AggregaThor's flag semantics and failures.

def _scalars(directory: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value)] of the TensorBoard scalars written under `directory`."""
  scalars: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name in ("scalars", ""):  # not the text, images, histograms
          scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
  return scalars


@pytest.mark.parametrize("trigger", ["delta", "period"])
@pytest.mark.parametrize("schedule", ["fixed", "polynomial", "exponential", "inverse-time", "cosine"])
def test_every_output_trigger_with_every_schedule(capsys, tmp_path, schedule, trigger):
  checkpoints = tmp_path / "checkpoints"
  every_step = (["--checkpoint-delta", "1", "--summary-delta", "1", "--evaluation-delta", "1"] if trigger == "delta"
                else ["--checkpoint-period", "1e-9", "--summary-period", "1e-9", "--evaluation-period", "1e-9"])
  decay = [] if schedule == "fixed" else ["decay-steps:2"]
  _train(capsys, "--nb-workers", "2", "--max-steps", "3", "--learning-rate", schedule, "--learning-rate-args",
         "initial-rate:0.1", *decay, "--checkpoint-dir", str(checkpoints), "--study-period", "1",
         "--study-file", str(tmp_path / "study.tsv"), "--log-period", "1e-9", "--trace", *every_step)
  # The summaries and the evaluation file default to the checkpoint directory.
  assert [step for _, step, _, _ in _evaluations(checkpoints / "eval")] == [1, 2, 3]
  rates = _scalars(checkpoints)["train/learning-rate"]
  assert [step for step, _ in rates] == [1, 2, 3]
  expected = {"fixed": [0.1] * 3, "polynomial": [0.05005, 0.0001, 0.0001], "exponential": [0.1 * 0.96 ** 0.5,
              0.096, 0.1 * 0.96 ** 1.5], "inverse-time": [0.08, 2 / 30, 0.1 / 1.75],
              "cosine": [0.1 * (1 + math.cos(math.pi / 2)) / 2, 0., 0.]}[schedule]
  # The rate of the step about to run: after step s, the optimizer has done s iterations.
  np.testing.assert_allclose([rate for _, rate in rates], expected, rtol=1e-5, atol=1e-7)
  assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == ["ckpt-1.index", "ckpt-2.index",
                                                                        "ckpt-3.index"]


def test_output_paths_dash_means_none(capsys, tmp_path):
  checkpoints = tmp_path / "checkpoints"
  _train(capsys, "--nb-workers", "2", "--max-steps", "2", "--evaluation-delta", "1", "--summary-delta", "1",
         "--checkpoint-dir", str(checkpoints), "--summary-dir", "-", "--evaluation-file", "-")
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-2")
  assert not (checkpoints / "eval").exists() and not list(checkpoints.glob("events.out.tfevents.*"))
  assert not pathlib.Path("-").exists()


def test_explicit_output_paths_win_over_the_checkpoint_dir(capsys, tmp_path):
  checkpoints, summaries, evaluation = tmp_path / "checkpoints", tmp_path / "tb", tmp_path / "eval.tsv"
  _train(capsys, "--nb-workers", "2", "--max-steps", "2", "--evaluation-delta", "1", "--summary-delta", "1",
         "--checkpoint-dir", str(checkpoints), "--summary-dir", str(summaries), "--evaluation-file", str(evaluation))
  assert [step for _, step, _, _ in _evaluations(evaluation)] == [1, 2]
  assert list(summaries.glob("events.out.tfevents.*")) and not (checkpoints / "eval").exists()


def test_non_positive_max_steps_means_no_limit(capsys, tmp_path, caplog):
  # Trains until stopped: SIGTERM after a few seconds saves a checkpoint and exits with 143.
  checkpoints = tmp_path / "checkpoints"
  timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
  timer.start()
  try:
    status, out, err = _run(capsys, "--nb-workers", "2", "--max-steps", "0", "--checkpoint-dir", str(checkpoints),
                            "--log-period", "1")
  finally:
    timer.cancel()
  assert status == 143, err[-3000:]
  trained = int(re.search(r"^Trained (\d+) steps", out, re.MULTILINE)[1])
  assert trained > 1
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith(f"ckpt-{trained}")
  assert "/no limit" in caplog.text


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU")),
                    reason="the fallback to the CPU needs a machine without GPU and TPU")
def test_accelerator_flags_fall_back_to_the_cpu_with_a_warning(capsys, tmp_path, caplog):
  # AggregaThor's local command line passes --reuse-gpu alone; it must run on a CPU machine.
  out = _train(capsys, "--nb-workers", "2", "--max-steps", "1", "--reuse-gpu", "--reuse-tpu")
  assert "Trained 1 steps" in out
  assert "TensorFlow sees no GPU; the workers run on the CPU" in caplog.text
  assert "TensorFlow sees no TPU" in caplog.text


def test_every_flag_has_a_help_text():
  parser = runner.build_parser()
  missing = [action.option_strings[0] for action in parser._actions if not action.help]  # pylint: disable=protected-access
  assert not missing


def test_the_flag_tables_match_the_library():
  # runner.py names the optimizers and schedules itself, so that --help needs no TensorFlow.
  from strategies import schedules  # pylint: disable=import-outside-toplevel
  assert runner.OPTIMIZERS == sorted(training.OPTIMIZERS) and runner.SCHEDULES == schedules.names()
  from aggregathor import redundancy  # pylint: disable=g-import-not-at-top
  assert runner.PLACEMENTS == redundancy.names()
  from aggregathor import compression  # pylint: disable=g-import-not-at-top
  assert runner.COMPRESSORS == compression.names()


def _approach(*args: str):
  flags = runner.build_parser().parse_args(["--nb-workers", "15", *args])
  runner.resolve_approach(flags)
  return flags.redundancy, flags.byzantine_set, flags.aggregator


def test_byzshield_approaches_set_the_placement_and_the_byzantine_set():
  assert _approach() == (None, "worst", "average")
  assert _approach("--approach", "mols", "--aggregator", "median") == ("mols", "worst", "median")
  assert _approach("--approach", "rama_one")[:2] == ("ramanujan-1", "worst")
  assert _approach("--approach", "rama_two")[:2] == ("ramanujan-2", "worst")
  assert _approach("--approach", "draco-lite")[:2] == ("detox", "random")
  assert _approach("--approach", "draco_lite_attack", "--byzantine-set", "benign")[:2] == ("detox", "benign")
  assert _approach("--approach", "maj_vote") == ("detox", "random", "average")
  assert _approach("--approach", "mols", "--byzantine-set", "random")[:2] == ("mols", "random")
  assert _approach("--approach", "baseline", "--aggregator", "krum")[0] is None


@pytest.mark.parametrize("args, message", [
    (["--approach", "mols", "--redundancy", "detox"], "drop --redundancy detox"),
    (["--approach", "maj_vote", "--aggregator", "krum"], "averages the voted files"),
    (["--approach", "baseline", "--byzantine-set", "random"], "has none"),
    (["--approach", "draco_lite_attack", "--byzantine-set", "random"], "worst, benign or whole-group"),
])
def test_contradicting_an_approach_is_a_usage_error(capsys, args, message):
  with pytest.raises(SystemExit) as exit_info:
    runner.run(["--experiment", "digits", "--nb-workers", "15", *args])
  assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_redundancy_run_writes_the_distorted_files_in_the_study_file(capsys, tmp_path):
  study = tmp_path / "study.tsv"
  # DETOX with 9 workers in 3 groups of 3: the worst set of 2 takes the majority of one group.
  _train(capsys, "--nb-workers", "9", "--replication", "3", "--approach", "draco_lite_attack",
         "--nb-real-byz-workers", "2", "--attack", "constant", "--aggregator", "median", "--max-steps", "4",
         "--study-period", "2", "--study-file", str(study), "--checkpoint-dir", "-")
  header, *rows = study.read_text().splitlines()
  column = header.lstrip("# ").split("\t").index("redundancy/distorted-files")
  assert [float(row.split("\t")[column]) for row in rows] == [1.0, 1.0]


def test_failure_during_training_saves_and_names_the_checkpoint(capsys, tmp_path, caplog, monkeypatch):
  checkpoints = tmp_path / "checkpoints"

  def failing_evaluation(self):
    raise RuntimeError("disk on fire")

  monkeypatch.setattr(training.Training, "evaluate", failing_evaluation)
  with pytest.raises(RuntimeError, match="disk on fire"):
    runner.run(["--experiment", "digits", *QUIET, "--nb-workers", "2", "--max-steps", "5", "--evaluation-delta", "2",
                "--checkpoint-dir", str(checkpoints)])
  assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-2")
  assert (f"Training failed at step 2 with RuntimeError; its checkpoint is {checkpoints / 'ckpt-2'}: rerun with "
          "the same --checkpoint-dir to resume from it") in caplog.text


def test_output_redirections_overwrite(tmp_path):
  # A real process: redirecting file descriptors 1 and 2 in the test process would take pytest's.
  stdout = tmp_path / "out.txt"
  stdout.write_text("an earlier run's output\n")
  result = subprocess.run([sys.executable, str(REPO_ROOT / "runner.py"), "--experiment", "digits", *QUIET,
                           "--max-steps", "1", "--stdout-to", str(stdout), "--stderr-to", "-"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  text = stdout.read_text()
  assert "an earlier run" not in text and "Trained 1 steps" in text
  assert "Trained" not in result.stdout and "Evaluation at step 1" in result.stderr  # '-': stderr stays
  assert not (tmp_path / "-").exists()


def test_aggregathor_local_command_line(capsys, shared_data):
  # The seed's local command line (its --server/--*-job-name flags belong to cluster mode), offline data added.
  status = runner.run(["--experiment", "mnist", "--experiment-args", f"idx-dir:{shared_data / 'mnist'}",
                       "--learning-rate-args", "initial-rate:0.05", "--aggregator", "average", "--nb-workers", "4",
                       "--reuse-gpu", "--max-step", "3", "--evaluation-period", "-1", "--checkpoint-period", "-1",
                       "--summary-period", "-1", "--evaluation-delta", "100", "--checkpoint-delta", "-1",
                       "--summary-delta", "-1", "--no-wait"])
  assert status == 0, capsys.readouterr().err[-3000:]
  assert "Trained 3 steps" in capsys.readouterr().out


def test_compression_counts_the_bytes_sent_in_the_study_and_in_the_output(capsys, tmp_path):
  study = tmp_path / "study.tsv"
  out = _train(capsys, "--nb-workers", "3", "--compression", "adacomp", "--compression-args", "compression_rate:0.1",
               "--max-steps", "4", "--study-period", "2", "--study-file", str(study), "--checkpoint-dir", "-")
  header, *rows = study.read_text().splitlines()
  column = header.lstrip("# ").split("\t").index("compression/bytes-per-worker")
  sent = {float(row.split("\t")[column]) for row in rows}
  assert len(rows) == 2 and sent == {6008.0}  # 751 (index, value) pairs: 10% of each variable, 5x less
  assert re.search(r"Sent \d+\.\d{3} MB of compressed gradients \(5\.0x less than float32 rows\)", out), out


@pytest.mark.parametrize("args, message", [
    (["--compression-args", "ratio:0.1"], "--compression-args given without --compression"),
    (["--compression", "topk", "--compression-args", "rate:0.1"], "unknown"),
    (["--compression", "topk", "--redundancy", "detox", "--nb-workers", "3"], "it takes neither --redundancy"),
])
def test_bad_compression_flags_are_refused(capsys, args, message):
  status, _, err = _run(capsys, "--max-steps", "1", *args)
  assert status == 2 and message in err, err


@pytest.mark.parametrize("place", ["update", "worker"])
def test_nesterov_computes_each_gradient_ahead_along_the_momentum(place):
  # Two steps with one worker, by hand: g1 at θ0 (m is 0), m1 = g1, θ1 = θ0 - lr m1; then g2 at θ1 - lr μ m1,
  # m2 = μ m1 + g2, θ2 = θ1 - lr m2. With one worker, its momentum and the update's are the same.
  lr, mu = 0.1, 0.9
  run = training.Training(training.TrainingConfig(
      experiment="digits", nb_workers=1, momentum=mu, momentum_at=place, nesterov=True, max_steps=2,
      learning_rate_args={"initial-rate": lr}, evaluation_period=-1, checkpoint_period=-1, summary_period=-1,
      log_period=-1, no_wait=True))
  model = run.model
  theta = [tf.constant(v.numpy()) for v in model.trainable_variables]
  batches = list(run.experiment.train_dataset(1, seed=0).take(2))

  def gradient_at(params, batch):
    x, y = batch
    with tf.GradientTape() as tape:
      tape.watch(params)
      logits, _ = model.stateless_call(params, [v.value for v in model.non_trainable_variables], x, training=True)
      loss = training.penalised_loss(logits, y, [], 0.0, 0.0)
    return tape.gradient(loss, params)

  m1 = gradient_at(theta, batches[0])
  theta1 = [t - lr * m for t, m in zip(theta, m1)]
  g2 = gradient_at([t - lr * mu * m for t, m in zip(theta1, m1)], batches[1])
  theta2 = [t - lr * (mu * m + g) for t, m, g in zip(theta1, m1, g2)]
  assert run.run() == 0
  for expected, variable in zip(theta2, model.trainable_variables):
    np.testing.assert_allclose(variable.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_nesterov_without_momentum_or_outside_local_sgd_is_a_usage_error(capsys, tmp_path):
  assert "give --momentum too" in _bad_argument(capsys, tmp_path, "--nesterov")
  assert "drop --optimizer" in _bad_argument(capsys, tmp_path, "--nesterov", "--momentum", "0.9",
                                             "--optimizer", "adam")
