"""strategies.provenance: each run's record in its result directory, kept across resumed runs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from strategies import provenance


@dataclasses.dataclass
class Config:
  seed: int = 3
  aggregator: str = "krum"


def test_records_accumulate_with_the_command_configuration_versions_and_commit(tmp_path):
  provenance.append(tmp_path, provenance.record(Config(), 0, ["runner.py", "--seed", "3"]))
  provenance.append(tmp_path, provenance.record(Config(), 100, ["runner.py", "--seed", "3"]))
  first, second = provenance.read(tmp_path)
  assert first["command"][1:] == ["runner.py", "--seed", "3"] and first["seed"] == 3
  assert first["configuration"] == {"seed": 3, "aggregator": "krum"} and second["start_step"] == 100
  assert "tensorflow" in first["versions"] or "tensorflow-cpu" in first["versions"]
  assert first["git"] is None or len(first["git"]["commit"]) == 40
  assert not list(tmp_path.glob(".provenance.json.*"))  # replaced atomically, no temporary left


def test_a_damaged_file_is_named_not_overwritten(tmp_path):
  (tmp_path / provenance.FILE).write_text("{not json")
  with pytest.raises(ValueError, match="is not a provenance file"):
    provenance.append(tmp_path, {"command": []})
  assert (tmp_path / provenance.FILE).read_text() == "{not json"
  json.dumps(provenance.versions())


def test_markdown_for_tensorboard_has_one_row_per_field_and_escapes_bars():
  entry = provenance.record(Config(aggregator="a|b"), 5, ["runner.py"])
  table = provenance.as_markdown(entry).splitlines()
  assert table[:2] == ["| field | value |", "|---|---|"]
  assert "| start step | `5` |" in table and '| config aggregator | `"a\\|b"` |' in table
  assert len(table) == 2 + 5 + len(entry["versions"]) + len(entry["configuration"])
