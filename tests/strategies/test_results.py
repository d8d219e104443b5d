"""strategies.results: result directories read back, their derived metrics, tables and plots."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from strategies import provenance, results


def _write_run(directory: pathlib.Path, seed: int = 1, aggregator: str = "krum", attack: str | None = "little",
               momentum_at: str = "update", nb_workers: int = 7, byzantine: int = 2,
               accuracies: tuple[float, ...] = (0.2, 0.5, 0.6), ratios: tuple[float, ...] | None = None,
               bound: float | None = None) -> pathlib.Path:
  """A result directory as runner.py leaves one, with chosen numbers."""
  directory.mkdir(parents=True)
  config = {"experiment": "digits", "seed": seed, "aggregator": aggregator, "aggregator_args": {},
            "nb_workers": nb_workers, "nb_decl_byz_workers": byzantine if attack else 0,
            "nb_real_byz_workers": byzantine if attack else 0, "attack": attack, "attack_args": {},
            "label_flip": False, "momentum_at": momentum_at, "learning_rate_args": {"initial-rate": 0.1},
            "evaluation_file": str(directory / "eval"), "study_file": str(directory / "study"),
            "checkpoint_dir": str(directory), "max_steps": 3}
  entry = {"command": ["runner.py"], "working_directory": str(directory), "started": "", "start_step": 0,
           "seed": seed, "configuration": config, "versions": {}, "git": None, "host": "",
           "details": {"rule_bound": bound}}
  provenance.append(directory, entry)
  (directory / "eval").write_text("".join(f"1.000\t{step}\taccuracy:{accuracy}\tloss:{1 - accuracy}\n"
                                          for step, accuracy in enumerate(accuracies, 1)))
  columns = ["step", "walltime", "loss", results.RATIO, "cosine/honest-defense"]
  columns += [f"selected/worker-{i:02d}" for i in range(nb_workers)]
  rows = []
  for step in range(1, len(accuracies) + 1):
    ratio = ratios[step - 1] if ratios else 0.5
    kept = ["1" if i == step % (nb_workers - byzantine) else "0" for i in range(nb_workers)]
    rows.append("\t".join([str(step), "1.0", "0.5", str(ratio), "0.9", *kept]))
  (directory / "study").write_text("# " + "\t".join(columns) + "\n" + "\n".join(rows) + "\n")
  return directory


def test_load_reads_the_files_and_names_rule_attack_and_setting(tmp_path):
  result = results.load(_write_run(tmp_path / "run"))
  assert result.rule == "krum" and result.attack == "little" and result.seed == 1
  assert list(result.evaluations["step"]) == [1, 2, 3] and result.final() == 0.6 and result.best() == 0.6
  assert result.byzantine_workers == [5, 6]
  assert "seed" not in result.setting() and "evaluation_file" not in result.setting()
  assert result.setting()["momentum_at"] == "update"


def test_a_line_cut_short_by_a_kill_is_skipped_and_a_bad_line_named(tmp_path):
  directory = _write_run(tmp_path / "run")
  with open(directory / "eval", "a") as file:
    file.write("1.000\t4\taccu")
  assert list(results.load(directory).evaluations["step"]) == [1, 2, 3]
  (directory / "eval").write_text("garbage\n1.000\t2\taccuracy:0.5\n")
  with pytest.raises(results.ResultError, match=r"eval:1: expected 'walltime<TAB>step"):
    results.load(directory)


def test_a_directory_without_provenance_is_a_clear_error(tmp_path):
  with pytest.raises(results.ResultError, match="has no provenance.json"):
    results.load(tmp_path)
  with pytest.raises(results.ResultError, match="no result directory in"):
    results.load_all([tmp_path])


def test_the_ratio_column_is_the_one_the_recorder_writes():
  from strategies import study  # pylint: disable=import-outside-toplevel
  assert results.RATIO == study.RATIO


def test_ratio_condition_counts_the_steps_below_the_bound_squared(tmp_path):
  result = results.load(_write_run(tmp_path / "run", ratios=(0.01, 0.3, 0.2), bound=0.5))
  assert results.ratio_condition(result) == pytest.approx(2 / 3)  # 0.01 and 0.2 < 0.25
  assert results.ratio_condition(results.load(_write_run(tmp_path / "unbounded"))) is None


def test_seeds_are_grouped_and_the_worst_attack_found(tmp_path):
  runs = [_write_run(tmp_path / "a1", seed=1, attack="little", accuracies=(0.5, 0.7)),
          _write_run(tmp_path / "a2", seed=2, attack="little", accuracies=(0.5, 0.9)),
          _write_run(tmp_path / "b1", seed=1, attack="empire", accuracies=(0.3, 0.4)),
          _write_run(tmp_path / "c1", seed=1, attack="empire", aggregator="median", accuracies=(0.6, 0.8))]
  loaded = results.load_all([tmp_path])
  assert len(loaded) == len(runs)
  rows = {(row["rule"], row["attack"]): row for row in results.summary_rows(loaded)}
  assert rows[("krum", "little")]["seeds"] == "1 2" and rows[("krum", "little")]["best-accuracy"] == pytest.approx(0.8)
  assert rows[("krum", "little")]["best-accuracy-std"] == pytest.approx(0.1)
  worst = results.worst_case(loaded)
  assert worst[("all runs", "krum")] == (pytest.approx(0.4), "empire")
  assert worst[("all runs", "median")] == (pytest.approx(0.8), "empire")


def test_momentum_headline_and_share_improved(tmp_path):
  # Baseline 0.9; little costs krum 0.5 at the update, and worker momentum wins 0.3 back; empire costs 0.1 only.
  _write_run(tmp_path / "ref", aggregator="average", attack=None, nb_workers=5, accuracies=(0.9,))
  _write_run(tmp_path / "lu", attack="little", momentum_at="update", accuracies=(0.4,))
  _write_run(tmp_path / "lw", attack="little", momentum_at="worker", accuracies=(0.7,))
  _write_run(tmp_path / "eu", attack="empire", momentum_at="update", accuracies=(0.8,))
  _write_run(tmp_path / "ew", attack="empire", momentum_at="worker", accuracies=(0.75,))
  loaded = results.load_all([tmp_path])
  headline = results.momentum_headline(loaded, threshold=0.2)
  assert headline == {"cases": 2, "worker-better": 1, "effective": 1, "recovered": 1, "threshold": 0.2}
  # Worst case over the attacks: at the update 0.4 (little), at the workers 0.7 (little): better.
  share, pairs = results.share_improved(loaded, "momentum_at", "worker", "update")
  assert (share, pairs) == (1.0, 1)


def test_plot_all_writes_tables_and_every_plot_as_png_and_pdf(tmp_path):
  for seed in (1, 2):
    _write_run(tmp_path / "runs" / f"krum-{seed}", seed=seed)
    _write_run(tmp_path / "runs" / f"median-{seed}", seed=seed, aggregator="median", attack="empire",
               momentum_at="worker")
  loaded = results.load_all([tmp_path / "runs"])
  written = results.plot_all(loaded, tmp_path / "plots")
  names = {path.name for path in written}
  assert {"summary.tsv", "worst-case.tsv", "worst-case-heatmap.png", "worst-case-heatmap.pdf"} <= names
  for prefix in ("accuracy-", "loss-", "cosine-", "selection-"):
    assert any(name.startswith(prefix) and name.endswith(".png") for name in names), prefix
    assert any(name.startswith(prefix) and name.endswith(".pdf") for name in names), prefix
  assert all(path.stat().st_size > 1000 for path in written if path.suffix in (".png", ".pdf"))
  assert (tmp_path / "plots" / "accuracy-momentum-at=update.png").exists()  # one figure per setting
  header, *rows = (tmp_path / "plots" / "summary.tsv").read_text().splitlines()
  assert header.startswith("# setting\trule\tattack\tseeds") and len(rows) == 2
  json.dumps([str(path) for path in written])
  assert not math.isnan(results.summary_rows(loaded)[0]["best-accuracy"])
  assert np.isfinite(results.summary_rows(loaded)[0]["final-accuracy"])
