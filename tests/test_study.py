"""study.py on real runner.py runs, and what TensorBoard serves of them over its HTTP data API."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import runner
import study

QUIET = ["--evaluation-period", "-1", "--checkpoint-period", "-1", "--summary-period", "-1", "--log-period", "-1",
         "--no-wait"]


@pytest.fixture(scope="module")
def result_dirs(tmp_path_factory) -> list[pathlib.Path]:
  """Two rules under one attack, and one unattacked baseline: short digits runs with the study on."""
  root = tmp_path_factory.mktemp("results")
  runs = {"krum": ["--aggregator", "krum", "--attack", "little"],
          "median": ["--aggregator", "median", "--attack", "little"],
          "average": ["--aggregator", "average"]}
  directories = []
  for name, args in runs.items():
    directory = root / name
    byzantine = ["--nb-decl-byz-workers", "1", "--nb-real-byz-workers", "1"] if name != "average" else []
    status = runner.run(["--experiment", "digits", *QUIET, "--nb-workers", "5", *byzantine, *args, "--max-steps", "4",
                         "--evaluation-delta", "2", "--study-period", "1", "--summary-delta", "1",
                         "--checkpoint-dir", str(directory)])
    assert status == 0
    directories.append(directory)
  return directories


def test_a_run_leaves_a_complete_result_directory(result_dirs):
  krum = result_dirs[0]
  assert {"provenance.json", "eval", "study", "checkpoint"} <= {path.name for path in krum.iterdir()}
  record = json.loads((krum / "provenance.json").read_text())["runs"][0]
  assert record["details"]["rule_bound"] > 0 and record["details"]["nb_parameters"] > 0
  header = (krum / "study").read_text().splitlines()[0]
  assert "honest/variance-norm-ratio" in header


def test_study_cli_writes_tables_and_plots(result_dirs, tmp_path, capsys):
  assert study.run([str(path) for path in result_dirs] + ["--output", str(tmp_path / "out")]) == 0
  out = capsys.readouterr().out
  assert "3 runs in 3 groups" in out and "krum" in out and "Wrote " in out
  names = {path.name for path in (tmp_path / "out").iterdir()}
  assert {"summary.tsv", "worst-case.tsv", "worst-case-heatmap.png", "worst-case-heatmap.pdf"} <= names
  assert any(name.startswith("selection-") and "krum" in name for name in names)
  summary = (tmp_path / "out" / "summary.tsv").read_text().splitlines()
  krum_row = next(line for line in summary if "\tkrum\t" in line).split("\t")
  ratio_share = float(krum_row[-1])
  assert 0 <= ratio_share <= 1  # Krum has a bound: the share of steps meeting it is a number


def test_study_cli_names_a_directory_that_is_not_a_result(tmp_path, capsys):
  assert study.run([str(tmp_path), "--output", str(tmp_path / "out")]) == 2
  assert "study.py: error: no result directory in" in capsys.readouterr().err


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _get(url: str):
  with urllib.request.urlopen(url, timeout=5) as response:
    return json.loads(response.read())


@pytest.mark.skipif(not shutil.which("tensorboard", path=os.path.dirname(sys.executable)) and
                    not shutil.which("tensorboard"), reason="tensorboard is not installed")
def test_tensorboard_serves_the_runs_scalars_images_and_configuration(result_dirs):
  binary = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or shutil.which("tensorboard")
  port = _free_port()
  process = subprocess.Popen([binary, "--logdir", str(result_dirs[0].parent), "--host", "127.0.0.1", "--port",
                              str(port), "--reload_interval", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    base = f"http://127.0.0.1:{port}/data/plugin"
    deadline = time.monotonic() + 90
    scalars = {}
    while time.monotonic() < deadline:
      try:
        scalars = _get(f"{base}/scalars/tags")
        if "krum" in scalars and "evaluation/accuracy" in scalars["krum"]:
          break
      except OSError:
        pass
      time.sleep(1)
    assert "krum" in scalars, f"TensorBoard served no krum run in 90 s: {scalars}"
    assert {"evaluation/accuracy", "cosine/honest-defense", "selection-rate/worker-04"} <= set(scalars["krum"])
    images = _get(f"{base}/images/tags")
    assert "selection/kept" in images["krum"]
    description = images["krum"]["selection/kept"]["description"]
    assert "Byzantine" in description and "worker" in description
    text = _get(f"{base}/text/tags")
    assert "run/provenance" in text["krum"]
    histograms = _get(f"{base}/histograms/tags")
    assert any(tag.startswith("weights/") for tag in histograms["krum"]), histograms
  finally:
    process.terminate()
    try:
      process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
