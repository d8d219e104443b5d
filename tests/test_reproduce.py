"""reproduce.py: the Distributed Momentum grid, its subsets, its resumption, and a small grid run for real."""

from __future__ import annotations

import pathlib

import pytest

import reproduce
from strategies import reproduction


def test_the_grid_has_the_papers_runs_and_conventions():
  runs = reproduction.momentum_grid({})
  assert len(runs) == 1840  # 368 configurations x 5 seeds, as in the paper's code
  names = {run.name for run in runs}
  assert "fashion-mnist-little-bulyan-f_12-at_worker-lr_0.5-nesterov-seed_3" in names
  assert not any("bulyan-f_24" in name for name in names)  # Bulyan needs n >= 4f + 3
  krum = next(run for run in runs if "-krum-f_24-" in run.name)
  args = " ".join(krum.args)
  assert "--aggregator multi-krum --aggregator-args m:25" in args  # its krum: Multi-Krum, m = n - f - 2
  assert "--attack little --attack-args factor:-1.5" in args and "--gradient-clip 2" in args
  assert "batch-size:83" in args and "--momentum 0.9" in args and "--l2-regularize 1e-4" in args
  baseline = next(run for run in runs if "-average-" in run.name)
  assert "--nb-workers 27" in " ".join(baseline.args) and "--attack" not in baseline.args
  empire = next(run for run in runs if "-empire-" in run.name)
  assert "--attack-args factor:0.1" in " ".join(empire.args)
  assert len(reproduction.momentum_grid({}, **reproduction.SUBSETS["smoke"])) == 9
  assert len(reproduction.momentum_grid({}, **reproduction.SUBSETS["headline"])) == 25


def test_an_interrupted_run_resumes_for_the_steps_it_has_left(tmp_path):
  run = reproduction.momentum_grid({}, **reproduction.SUBSETS["smoke"])[0]
  assert run.command(tmp_path)[run.command(tmp_path).index("--max-steps") + 1] == "300"
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-250"\nall_model_checkpoint_paths: "ckpt-250"\n')
  assert run.command(tmp_path)[run.command(tmp_path).index("--max-steps") + 1] == "50"


def test_a_bad_choice_is_a_usage_error(capsys):
  with pytest.raises(SystemExit):
    reproduce.run(["--rules", "average"])
  assert "invalid choice: 'average'" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    reproduce.run(["--supercharge", "0"])
  assert "--supercharge must be at least 1" in capsys.readouterr().err


def test_a_small_grid_runs_skips_what_finished_and_ends_with_the_tables(shared_data, tmp_path, capsys):
  args = ["--output", str(tmp_path), "--data-dir", str(shared_data), "--subset", "smoke", "--rules", "median",
          "--attacks", "empire", "--byzantine", "1", "--nb-workers", "7", "--steps", "3", "--supercharge", "2"]
  assert reproduce.run(args) == 0
  out = capsys.readouterr().out
  assert "0 of 3 runs already finished" in out and "3 of 3 runs finished" in out
  assert "Attacks costing at least 20 points at the update:" in out
  plots = {path.name for path in (tmp_path / "plots").iterdir()}
  assert {"summary.tsv", "worst-case-heatmap.png"} <= plots
  assert reproduce.run(args) == 0
  assert "3 of 3 runs already finished; 0 to run" in capsys.readouterr().out
  assert all((tmp_path / "runs" / name / "provenance.json").exists() for name in (
      "mnist-average-n_6-lr_0.02-seed_1", "mnist-empire-median-f_1-at_update-lr_0.02-seed_1"))
