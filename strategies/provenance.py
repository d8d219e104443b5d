"""Where a result came from: the command, the configuration, the seed, the library versions and the git commit.

Each run appends one record to `provenance.json` in its result directory (the
checkpoint directory), so that a resumed run keeps the records of the runs
before it, and every figure drawn from the directory traces back to the
commands that made it. The file is replaced atomically: a crash leaves the
previous one whole.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Sequence

FILE = "provenance.json"
LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "absl-py", "grpcio", "tensorboard",
             "tensorflow-datasets")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def versions() -> dict[str, str]:
  """The installed versions of the libraries a result depends on, and Python's."""
  found = {"python": platform.python_version()}
  for name in LIBRARIES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  return found


def git_commit(root: pathlib.Path = REPO_ROOT) -> dict[str, Any] | None:
  """The commit of the code that ran, and whether the tree had uncommitted changes; None outside a git checkout."""
  try:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            timeout=10, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit, "modified": bool(status.strip())}


def record(config: Any, start_step: int, argv: Sequence[str] | None = None) -> dict[str, Any]:
  """One run's record: its command line, its configuration (a dataclass), the step it started at, and more."""
  return {
      "command": [sys.executable, *(sys.argv if argv is None else argv)],
      "working_directory": os.getcwd(),
      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "start_step": int(start_step),
      "seed": getattr(config, "seed", None),
      "configuration": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config),
      "versions": versions(),
      "git": git_commit(),
      "host": platform.node(),
  }


def append(directory: str | os.PathLike, entry: dict[str, Any]) -> pathlib.Path:
  """Appends `entry` to the directory's provenance file (created if missing), atomically; returns its path."""
  path = pathlib.Path(directory) / FILE
  runs = read(directory)
  runs.append(entry)
  temporary = path.with_name(f".{FILE}.{os.getpid()}")
  temporary.write_text(json.dumps({"runs": runs}, indent=1, default=str) + "\n", encoding="utf-8")
  os.replace(temporary, path)
  return path


def read(directory: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of the runs that wrote in `directory`, oldest first ([] if none)."""
  path = pathlib.Path(directory) / FILE
  if not path.exists():
    return []
  try:
    return list(json.loads(path.read_text(encoding="utf-8"))["runs"])
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f"{path} is not a provenance file ({error}); move it away to start a new one") from error


def as_markdown(entry: dict[str, Any]) -> str:
  """A record as a Markdown table, the form TensorBoard's text dashboard renders."""
  rows = [("command", " ".join(entry["command"])), ("started", entry["started"]),
          ("start step", entry["start_step"]), ("seed", entry["seed"]),
          ("git", "none" if not entry["git"] else
           entry["git"]["commit"] + (" (modified)" if entry["git"]["modified"] else ""))]
  rows += [(f"version {name}", version) for name, version in entry["versions"].items()]
  rows += [(f"config {key}", json.dumps(value, default=str)) for key, value in entry["configuration"].items()]
  escaped = ((key, str(value).replace("|", "\\|")) for key, value in rows)  # a | would end the cell
  cells = "\n".join(f"| {key} | `{value}` |" for key, value in escaped)
  return "| field | value |\n|---|---|\n" + cells
