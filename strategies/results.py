"""Result directories read back: their tables, derived metrics and plots (the library behind study.py).

A result directory is what one runner.py run leaves in its `--checkpoint-dir`:
`provenance.json` (each command that wrote there, with its configuration), the
evaluation file (`eval`), the study file (`study`, with `--study-period`) and the
TensorBoard summaries. `load` reads one; the functions below compare many, as the
study.py of El-Mhamdi, Guerraoui and Rouault's "Distributed Momentum for
Byzantine-resilient Stochastic Gradient Descent" (ICLR 2021) does:

- `ratio_condition`: the share of recorded steps where the honest gradients'
  variance-to-norm ratio (dev/‖ḡ‖)², dev² = Σ‖g_i − ḡ‖²/(n_h − 1), is below the
  square of the rule's bound (the condition under which the rule is proven safe);
- `summary_rows`, `worst_case`: final and best accuracies over seeds, and the worst
  case across attacks of each rule in each setting;
- `share_improved`: the share of settings where one value of a field (e.g. momentum
  at the workers) raises the worst-case accuracy over another (at the update), the
  paper's headline;
- `plot_all`: accuracy, loss, cosine(honest mean, defense), per-worker selection rates
  and the worst-case heatmap, as PNG and PDF.

Runs differing only in their seed are grouped, and their curves averaged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any, Iterable, Sequence

import numpy as np

from strategies import provenance

# Configuration fields that say where and how often a run wrote, not what it trained: left out of settings.
OUTPUT_FIELDS = frozenset({
    "max_steps", "checkpoint_dir", "checkpoint_delta", "checkpoint_period", "summary_dir", "summary_delta",
    "summary_period", "evaluation_file", "evaluation_delta", "evaluation_period", "study_period", "study_file",
    "log_period", "trace", "no_wait", "workers", "credentials", "step_timeout", "start_timeout", "cluster",
    "ps_job", "worker_job", "transport"})
# Fields shown as the rule, the attack and the seed rather than in the setting.
RULE_FIELDS = frozenset({"aggregator", "aggregator_args"})
ATTACK_FIELDS = frozenset({"attack", "attack_args", "nb_real_byz_workers", "label_flip"})
# The column strategies.study.RATIO writes; named here, not imported, so that study.py starts without TensorFlow.
RATIO = "honest/variance-norm-ratio"


class ResultError(ValueError):
  """A directory that is not a result directory, or a damaged file in one; the message says which."""


@dataclasses.dataclass
class Result:
  """One run's result directory, read back."""

  directory: pathlib.Path
  records: list[dict[str, Any]]  # provenance records, oldest first
  evaluations: dict[str, np.ndarray]  # "step", "walltime", then each metric ("accuracy", "loss")
  study: dict[str, np.ndarray]  # study file column -> values, by step ({} without a study file)

  @property
  def configuration(self) -> dict[str, Any]:
    return self.records[-1]["configuration"]

  @property
  def details(self) -> dict[str, Any]:
    return self.records[-1].get("details", {})

  @property
  def seed(self) -> int:
    return int(self.configuration.get("seed", 0))

  @property
  def rule(self) -> str:
    return _with_args(self.configuration.get("aggregator", "average"), self.configuration.get("aggregator_args"))

  @property
  def attack(self) -> str:
    config = self.configuration
    if config.get("label_flip"):
      return "label-flip"
    if not config.get("nb_real_byz_workers") or not config.get("attack"):
      return "none"
    return _with_args(config["attack"], config.get("attack_args"))

  @property
  def byzantine_workers(self) -> list[int]:
    """The workers that attack: the last nb_real_byz_workers, or those a redundancy run named."""
    config = self.configuration
    if config.get("byzantine_workers"):
      return list(config["byzantine_workers"])
    n, k = int(config.get("nb_workers", 1)), int(config.get("nb_real_byz_workers", 0))
    return list(range(n - k, n))

  def setting(self) -> dict[str, Any]:
    """What the run trained, beside its rule, attack and seed."""
    return {key: value for key, value in self.configuration.items()
            if key not in OUTPUT_FIELDS | RULE_FIELDS | ATTACK_FIELDS | {"seed"}}

  def metric(self, name: str = "accuracy") -> np.ndarray:
    if name not in self.evaluations:
      raise ResultError(f"{self.directory}: the evaluation file has no {name!r} (it has "
                        f"{sorted(set(self.evaluations) - {'step', 'walltime'})})")
    return self.evaluations[name]

  def final(self, name: str = "accuracy") -> float:
    values = self.metric(name)
    return float(values[-1]) if len(values) else math.nan

  def best(self, name: str = "accuracy") -> float:
    values = self.metric(name)
    return float(np.nanmax(values)) if len(values) else math.nan


def load(directory: str | os.PathLike) -> Result:
  """Reads a result directory; a clear `ResultError` if it is not one."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise ResultError(f"{directory} is not a directory: give the --checkpoint-dir of a runner.py run")
  try:
    records = provenance.read(directory)
  except ValueError as error:
    raise ResultError(str(error)) from error
  if not records:
    raise ResultError(f"{directory} has no {provenance.FILE}: it is not the --checkpoint-dir of a runner.py run "
                      "(runs since provenance was added leave one there)")
  config = records[-1]["configuration"]
  evaluation = _locate(directory, records[-1], config.get("evaluation_file"), "eval")
  study = _locate(directory, records[-1], config.get("study_file"), "study")
  return Result(directory, records, read_evaluations(evaluation) if evaluation else {"step": np.zeros(0)},
                read_study(study) if study else {})


def load_all(directories: Iterable[str | os.PathLike]) -> list[Result]:
  """Loads each directory, and each result directory found below one that is not one itself."""
  results = []
  for directory in directories:
    path = pathlib.Path(directory)
    if (path / provenance.FILE).exists():
      results.append(load(path))
      continue
    found = sorted(p.parent for p in path.rglob(provenance.FILE))
    if not found:
      raise ResultError(f"no result directory in {path}: expected {provenance.FILE} in it or below it")
    results.extend(load(p) for p in found)
  return results


def _locate(directory: pathlib.Path, record: dict[str, Any], configured: str | None, name: str) -> pathlib.Path | None:
  """The file a run wrote: where its configuration says, else its default name in the directory (moved runs)."""
  candidates = []
  if configured:
    path = pathlib.Path(configured)
    candidates.append(path if path.is_absolute() else pathlib.Path(record.get("working_directory", ".")) / path)
  candidates.append(directory / name)
  return next((path for path in candidates if path.exists()), None)


def read_evaluations(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The evaluation file's lines ("walltime TAB step TAB key:value..."), as columns; a step seen twice keeps its last line."""
  rows: dict[int, dict[str, float]] = {}
  lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
  for number, line in enumerate(lines, 1):
    fields = line.split("\t")
    try:
      row = {"walltime": float(fields[0]), "step": int(fields[1])}
      row.update((key, float(value)) for key, value in (field.split(":", 1) for field in fields[2:]))
    except (IndexError, ValueError):
      if number == len(lines):
        continue  # a last line cut short by a kill: the run redoes it on resuming
      raise ResultError(f"{path}:{number}: expected 'walltime<TAB>step<TAB>key:value...', got {line!r}") from None
    rows[row["step"]] = row
  return _columns([rows[step] for step in sorted(rows)])


def read_study(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The study file (a '# '-prefixed header of tab-separated columns, then one row per recorded step)."""
  lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
  if not lines or not lines[0].startswith("# "):
    raise ResultError(f"{path}: expected a study file, whose first line is '# ' and the tab-separated columns")
  columns = lines[0][2:].split("\t")
  rows: dict[int, dict[str, float]] = {}
  for number, line in enumerate(lines[1:], 2):
    fields = line.split("\t")
    if len(fields) != len(columns):
      if number == len(lines):
        continue  # cut short by a kill
      raise ResultError(f"{path}:{number}: expected {len(columns)} tab-separated values, got {len(fields)}")
    try:
      row = {column: float(value) for column, value in zip(columns, fields)}
    except ValueError as error:
      raise ResultError(f"{path}:{number}: {error}") from None
    rows[int(row["step"])] = row
  return _columns([rows[step] for step in sorted(rows)], columns)


def _columns(rows: list[dict[str, float]], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  names = list(names) if names is not None else list(dict.fromkeys(key for row in rows for key in row)) or ["step"]
  return {name: np.array([row.get(name, math.nan) for row in rows], dtype=np.float64) for name in names}


def _with_args(name: str, args: dict[str, Any] | None) -> str:
  return name + "".join(f" {key}:{value}" for key, value in sorted((args or {}).items()))


# Derived metrics.

def ratio_condition(result: Result) -> float | None:
  """Share of the recorded steps where (dev/‖ḡ‖)² < bound², bound being the rule's (None: no bound or no study)."""
  bound = result.details.get("rule_bound")
  if bound is None or RATIO not in result.study or not len(result.study[RATIO]):
    return None
  ratios = result.study[RATIO]
  return float(np.mean(ratios < bound ** 2))


def varying(results: Sequence[Result]) -> list[str]:
  """The setting fields whose values differ among the results, in configuration order."""
  settings = [result.setting() for result in results]
  keys = list(dict.fromkeys(key for setting in settings for key in setting))
  return [key for key in keys if len({json.dumps(s.get(key), sort_keys=True, default=str) for s in settings}) > 1]


def setting_label(result: Result, keys: Sequence[str]) -> str:
  setting = result.setting()
  parts = [f"{key.replace('_', '-')}={_short(setting.get(key))}" for key in keys]
  return ", ".join(parts) or "all runs"


def _short(value: Any) -> str:
  if isinstance(value, dict):
    return " ".join(f"{k}:{v}" for k, v in sorted(value.items())) or "{}"
  return str(value)


@dataclasses.dataclass
class Group:
  """The runs of one rule under one attack in one setting: its seeds."""

  setting: str
  rule: str
  attack: str
  runs: list[Result]

  def values(self, reduce: str, name: str = "accuracy") -> np.ndarray:
    return np.array([getattr(run, reduce)(name) for run in self.runs])


def groups(results: Sequence[Result]) -> list[Group]:
  """The results grouped by (setting, rule, attack), seeds together, in a stable order."""
  keys = varying(results)
  found: dict[tuple[str, str, str], list[Result]] = {}
  for result in results:
    found.setdefault((setting_label(result, keys), result.rule, result.attack), []).append(result)
  return [Group(*key, sorted(runs, key=lambda r: r.seed)) for key, runs in sorted(found.items())]


def summary_rows(results: Sequence[Result]) -> list[dict[str, Any]]:
  """One row per group: seeds, final and best accuracy (mean, std over seeds), the ratio condition's share."""
  rows = []
  for group in groups(results):
    final, best = group.values("final"), group.values("best")
    shares = [share for share in map(ratio_condition, group.runs) if share is not None]
    rows.append({"setting": group.setting, "rule": group.rule, "attack": group.attack,
                 "seeds": " ".join(str(run.seed) for run in group.runs),
                 "final-accuracy": float(np.mean(final)), "final-accuracy-std": float(np.std(final)),
                 "best-accuracy": float(np.mean(best)), "best-accuracy-std": float(np.std(best)),
                 "ratio-condition": float(np.mean(shares)) if shares else math.nan})
  return rows


def worst_case(results: Sequence[Result], attacked_only: bool = True) -> dict[tuple[str, str], tuple[float, str]]:
  """(setting, rule) -> (the lowest mean-over-seeds best accuracy across attacks, that attack).

  `attacked_only`: leave out the unattacked runs ("none"), where a rule also ran under attacks.
  """
  by_cell: dict[tuple[str, str], list[tuple[float, str]]] = {}
  for group in groups(results):
    by_cell.setdefault((group.setting, group.rule), []).append((float(np.mean(group.values("best"))), group.attack))
  worst = {}
  for cell, scores in by_cell.items():
    attacked = [score for score in scores if score[1] != "none"]
    worst[cell] = min(attacked if attacked_only and attacked else scores)
  return worst


def share_improved(results: Sequence[Result], field: str, better: Any, than: Any) -> tuple[float, int]:
  """Share of the (setting without `field`, rule) pairs where `field=better` has a higher worst-case accuracy
  than `field=than`, and how many pairs had both; e.g. ("momentum_at", "worker", "update")."""
  worst: dict[tuple[str, str, bool], float] = {}  # (setting, rule, is field=better) -> worst attacked accuracy
  keys = [key for key in varying(results) if key != field]
  for group in groups(results):
    value = group.runs[0].setting().get(field)
    if group.attack == "none" or value not in (better, than):
      continue
    cell = (setting_label(group.runs[0], keys), group.rule, value == better)
    worst[cell] = min(worst.get(cell, math.inf), float(np.mean(group.values("best"))))
  pairs = [(score, worst[(setting, rule, False)]) for (setting, rule, is_better), score in worst.items()
           if is_better and (setting, rule, False) in worst]
  if not pairs:
    return math.nan, 0
  return float(np.mean([a > b for a, b in pairs])), len(pairs)


def momentum_headline(results: Sequence[Result], threshold: float = 0.2) -> dict[str, Any]:
  """The Distributed Momentum paper's headline: where an attack costs at least `threshold` of top-1 accuracy
  with momentum at the update, how often momentum at the workers wins back at least `threshold`.

  For each rule, attack and setting run at both places (best accuracies, averaged over seeds): the loss is
  the unattacked baseline's (averaging over the n − f honest workers, with everything else equal) minus the
  at-update accuracy, and the gain is the at-worker accuracy minus the at-update one.
  """
  def key(result: Result, *drop: str) -> str:
    setting = {k: v for k, v in result.setting().items() if k not in drop}
    setting["honest"] = int(result.configuration.get("nb_workers", 1)) - int(
        result.configuration.get("nb_real_byz_workers", 0))
    return json.dumps(setting, sort_keys=True, default=str)

  best = {}
  reference = {}
  for group in groups(results):
    accuracy = float(np.mean(group.values("best")))
    run = group.runs[0]
    if group.attack == "none":
      if group.rule == "average":
        reference[key(run, "nb_workers", "nb_decl_byz_workers", "momentum_at")] = accuracy
      continue
    best[(key(run, "momentum_at"), group.rule, group.attack, run.configuration.get("momentum_at"))] = accuracy
  cases = []
  for (setting, rule, attack, place), at_worker in best.items():
    at_update = best.get((setting, rule, attack, "update"))
    if place != "worker" or at_update is None:
      continue
    setting_key = json.loads(setting)
    for field in ("nb_workers", "nb_decl_byz_workers"):
      setting_key.pop(field, None)
    ref = reference.get(json.dumps(setting_key, sort_keys=True, default=str))
    cases.append({"rule": rule, "attack": attack, "reference": ref, "at-update": at_update, "at-worker": at_worker})
  effective = [c for c in cases if c["reference"] is not None and c["reference"] - c["at-update"] >= threshold]
  recovered = [c for c in effective if c["at-worker"] - c["at-update"] >= threshold]
  return {"cases": len(cases), "worker-better": sum(c["at-worker"] > c["at-update"] for c in cases),
          "effective": len(effective), "recovered": len(recovered), "threshold": threshold}


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> pathlib.Path:
  """Rows as a tab-separated file with a '# ' header (the study file's format)."""
  path = pathlib.Path(path)
  columns = list(rows[0]) if rows else []
  lines = ["# " + "\t".join(columns)]
  lines += ["\t".join(_cell(row[column]) for column in columns) for row in rows]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def _cell(value: Any) -> str:
  return f"{value:.4f}" if isinstance(value, float) else str(value)


# Plots (matplotlib, without pyplot's global state).

def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  return Figure(figsize=(width, height), layout="constrained")


def _save(figure, directory: pathlib.Path, name: str) -> list[pathlib.Path]:
  directory.mkdir(parents=True, exist_ok=True)
  paths = [directory / f"{name}.{ext}" for ext in ("png", "pdf")]
  for path in paths:
    figure.savefig(path, dpi=120)
  return paths


def slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:150] or "all"


def _mean_curve(runs: Sequence[Result], source: str, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
  """Steps, mean and (min, max) over the seeds of a column, on the steps all seeds have."""
  tables = [run.evaluations if source == "evaluations" else run.study for run in runs]
  tables = [table for table in tables if column in table and len(table[column])]
  if not tables:
    return None
  steps = sorted(set.intersection(*(set(table["step"].astype(int)) for table in tables)))
  if not steps:
    return None
  values = np.array([[dict(zip(table["step"].astype(int), table[column]))[step] for step in steps] for table in tables])
  return np.array(steps), np.nanmean(values, axis=0), np.stack([np.nanmin(values, 0), np.nanmax(values, 0)])


def plot_curves(results: Sequence[Result], output: pathlib.Path, name: str, source: str, column: str,
                ylabel: str) -> list[pathlib.Path]:
  """For each setting, one panel per attack and one line per rule (mean over seeds, min-max band)."""
  written = []
  by_setting: dict[str, list[Group]] = {}
  for group in groups(results):
    by_setting.setdefault(group.setting, []).append(group)
  for setting, setting_groups in by_setting.items():
    attacks = sorted({group.attack for group in setting_groups})
    figure = _figure(4.2 * len(attacks), 3.4)
    axes = figure.subplots(1, len(attacks), squeeze=False)[0]
    drawn = False
    for axis, attack in zip(axes, attacks):
      for group in (g for g in setting_groups if g.attack == attack):
        curve = _mean_curve(group.runs, source, column)
        if curve is None:
          continue
        steps, mean, band = curve
        line, = axis.plot(steps, mean, label=f"{group.rule} ({len(group.runs)} seeds)")
        if len(group.runs) > 1:
          axis.fill_between(steps, band[0], band[1], color=line.get_color(), alpha=0.2)
        drawn = True
      axis.set_title(f"attack: {attack}", fontsize=9)
      axis.set_xlabel("step")
      axis.set_ylabel(ylabel)
      axis.grid(alpha=0.3)
      if axis.lines:
        axis.legend(fontsize=7)
    if drawn:
      figure.suptitle(setting, fontsize=9)
      written += _save(figure, output, f"{name}-{slug(setting)}")
  return written


def plot_selection(results: Sequence[Result], output: pathlib.Path) -> list[pathlib.Path]:
  """For each group whose rule selects, each worker's selection rate over the recorded steps; Byzantine in red."""
  written = []
  for group in groups(results):
    rates = []
    for run in group.runs:
      columns = sorted(column for column in run.study if column.startswith("selected/worker-"))
      if columns and len(run.study["step"]):
        rates.append([float(np.mean(run.study[column])) for column in columns])
    if not rates or len({len(r) for r in rates}) > 1:
      continue
    rate = np.mean(rates, axis=0)
    byzantine = set(group.runs[0].byzantine_workers) if group.attack != "none" else set()
    figure = _figure(max(4.0, 0.25 * len(rate) + 1.5), 3.0)
    axis = figure.subplots()
    colors = ["tab:red" if worker in byzantine else "tab:blue" for worker in range(len(rate))]
    axis.bar(range(len(rate)), rate, color=colors)
    axis.set_xlabel("worker (red: Byzantine)")
    axis.set_ylabel("share of recorded steps kept")
    axis.set_ylim(0, 1)
    axis.set_title(f"{group.rule} under {group.attack}\n{group.setting}", fontsize=8)
    written += _save(figure, output, f"selection-{slug(group.setting)}-{slug(group.rule)}-{slug(group.attack)}")
  return written


def plot_worst_case(results: Sequence[Result], output: pathlib.Path) -> list[pathlib.Path]:
  """A heatmap of the worst-case (across attacks) best accuracy: rules in rows, settings in columns."""
  worst = worst_case(results)
  if not worst:
    return []
  rules = sorted({rule for _, rule in worst})
  settings = sorted({setting for setting, _ in worst})
  grid = np.full((len(rules), len(settings)), np.nan)
  for (setting, rule), (value, _) in worst.items():
    grid[rules.index(rule), settings.index(setting)] = value
  figure = _figure(min(3 + 1.1 * len(settings), 30), 1.5 + 0.45 * len(rules))
  axis = figure.subplots()
  image = axis.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
  axis.set_xticks(range(len(settings)), [s.replace(", ", "\n") for s in settings], fontsize=6)
  axis.set_yticks(range(len(rules)), rules, fontsize=8)
  for (row, column), value in np.ndenumerate(grid):
    if np.isfinite(value):
      axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.5 else "black")
  figure.colorbar(image, ax=axis, label="worst-case best accuracy")
  axis.set_title("worst case across attacks", fontsize=9)
  return _save(figure, output, "worst-case-heatmap")


def plot_all(results: Sequence[Result], output: str | os.PathLike) -> list[pathlib.Path]:
  """Every plot and table of the results into `output`; returns the files written."""
  output = pathlib.Path(output)
  output.mkdir(parents=True, exist_ok=True)
  written = [write_table(summary_rows(results), output / "summary.tsv")]
  worst = worst_case(results)
  written.append(write_table([{"setting": s, "rule": r, "worst-case-accuracy": v, "attack": a}
                              for (s, r), (v, a) in sorted(worst.items())], output / "worst-case.tsv"))
  written += plot_curves(results, output, "accuracy", "evaluations", "accuracy", "test accuracy")
  has_train_loss = any("loss" in result.study for result in results)
  written += plot_curves(results, output, "loss", "study" if has_train_loss else "evaluations", "loss",
                         "training loss" if has_train_loss else "test loss")
  written += plot_curves(results, output, "cosine", "study", "cosine/honest-defense", "cos(honest mean, defense)")
  written += plot_selection(results, output)
  written += plot_worst_case(results, output)
  return written
