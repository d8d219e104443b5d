"""Real cluster processes on 127.0.0.1 for the cluster tests: worker tasks started with deploy.py, and runner.py.

Every process a test starts is stopped by its PID when the test (or module) ends.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from strategies.cluster import credentials, spec

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
EVALUATION = re.compile(r"\d+\.\d{3}\t(\d+)\taccuracy:(\S+)\tloss:\S+")
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


class Cluster:
  """n worker tasks and one parameter server task, all on 127.0.0.1, with their credentials."""

  def __init__(self, root: pathlib.Path, nb_workers: int):
    self.root = root
    root.mkdir(parents=True, exist_ok=True)
    self.spec = spec.loopback_cluster(nb_workers)
    self.ports = [int(address.rsplit(":", 1)[1]) for address in self.spec["workers"]]
    self.spec_path = root / "cluster.json"
    self.spec_path.write_text(json.dumps(self.spec))
    self.credentials = root / "creds"
    credentials.make_credentials(self.credentials, nb_workers)
    self.processes: list[subprocess.Popen] = []
    self.workers: dict[int, subprocess.Popen] = {}
    # Wraps every command line, e.g. in a network namespace (strategies.cluster.lossy_link's `command`).
    self.wrap = lambda command: command

  def spawn(self, command: list[str], log: pathlib.Path) -> subprocess.Popen:
    handle = open(log, "w", encoding="utf-8")  # pylint: disable=consider-using-with
    process = subprocess.Popen(self.wrap(command), cwd=self.root, env=ENVIRONMENT, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    self.processes.append(process)
    return process

  def start_worker(self, index: int, *extra: str, wait: bool = True) -> subprocess.Popen:
    log = self.root / f"worker-{index}.log"
    process = self.spawn([sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(self.spec_path), "--id",
                          f"workers:{index}", "--credentials", str(self.credentials), *extra], log)
    self.workers[index] = process
    if wait:
      wait_for(log, "serving on", process)
    return process

  def start_workers(self, attacks: dict[int, list[str]] | None = None, common: tuple[str, ...] = ()) -> None:
    """Starts every worker task, with `common` arguments and each one's own `attacks[index]`."""
    attacks = attacks or {}
    for index in range(len(self.ports)):
      self.start_worker(index, *common, *attacks.get(index, []), wait=False)
    for index, process in self.workers.items():
      wait_for(self.root / f"worker-{index}.log", "serving on", process)

  def runner(self, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "runner.py"), "--server", str(self.spec_path), "--credentials",
            str(self.credentials), "--nb-workers", str(len(self.ports)), "--evaluation-period", "-1",
            "--checkpoint-period", "-1", "--summary-period", "-1", *args]

  def start_ps(self, *args: str, log: str = "ps.log") -> subprocess.Popen:
    return self.spawn(self.runner(*args), self.root / log)

  def start_local(self, *args: str, log: str = "local.log") -> subprocess.Popen:
    """runner.py in local mode (the workers simulated), with start_ps's defaults otherwise."""
    command = self.runner(*args)
    del command[2:6]  # --server JSON --credentials DIR
    return self.spawn(command, self.root / log)

  wait_for = staticmethod(lambda *args, **kwargs: wait_for(*args, **kwargs))

  @staticmethod
  def wait_for_step(log: pathlib.Path, process: subprocess.Popen, step: int, timeout: float = 120) -> int:
    """Waits until the progress lines of `log` reach `step`; returns the last step logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      steps = [int(s) for s in re.findall(r"step (\d+)/", log.read_text(errors="replace"))]
      if steps and steps[-1] >= step:
        return steps[-1]
      assert process.poll() is None, log.read_text()[-3000:]
      time.sleep(0.2)
    raise AssertionError(f"step {step} not reached in {timeout} s:\n{log.read_text()[-3000:]}")

  @staticmethod
  def evaluations(path: pathlib.Path) -> list[tuple[int, float]]:
    """(step, accuracy) of each line of an evaluation file; every line must have the format."""
    rows = []
    for line in path.read_text().splitlines():
      match = EVALUATION.fullmatch(line)
      assert match, line
      rows.append((int(match[1]), float(match[2])))
    return rows

  def stop(self) -> None:
    for process in self.processes:
      if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
    for process in self.processes:
      try:
        process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_for(log: pathlib.Path, text: str, process: subprocess.Popen, timeout: float = 90.0) -> str:
  """Waits until `text` is in the log of `process`; fails with the log if it exits or time runs out."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    content = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    if text in content:
      return content
    if process.poll() is not None:
      pytest.fail(f"{log.name}: exited with {process.returncode} before {text!r}:\n{content[-3000:]}")
    time.sleep(0.1)
  pytest.fail(f"{log.name}: no {text!r} within {timeout} s:\n{content[-3000:]}")


@pytest.fixture
def make_cluster(tmp_path):
  """Builds clusters in this test's folder; all their processes are stopped at the end."""
  clusters = []

  def make(nb_workers: int = 4, name: str = "cluster") -> Cluster:
    cluster = Cluster(tmp_path / name, nb_workers)
    clusters.append(cluster)
    return cluster

  yield make
  for cluster in clusters:
    cluster.stop()
