"""The cluster description of AggregaThor's `--cluster`/`--server`: `{"job": ["host:port", ...], ...}`, and task ids."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from typing import Mapping, Sequence

JOB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
EXAMPLE = '{"ps": ["10.0.0.1:7000"], "workers": ["10.0.0.2:7000", "10.0.0.3:7000"]}'


def loopback_cluster(nb_workers: int) -> dict[str, list[str]]:
  """A cluster description of one parameter server and `nb_workers` workers on 127.0.0.1, for one machine.

  The ports are ones that nothing listened on when this was called: another
  process may take one before the cluster starts, as with any free port.
  """
  sockets = [socket.socket() for _ in range(nb_workers + 1)]
  try:
    for sock in sockets:
      sock.bind(("127.0.0.1", 0))  # all bound before any is closed, so the ports differ
    ps_port, *ports = (sock.getsockname()[1] for sock in sockets)
  finally:
    for sock in sockets:
      sock.close()
  return {"ps": [f"127.0.0.1:{ps_port}"], "workers": [f"127.0.0.1:{port}" for port in ports]}


class ClusterError(ValueError):
  """A bad cluster description, task id or cluster state; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class Address:
  host: str
  port: int

  def __str__(self) -> str:
    return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class TaskId:
  """One task of the cluster: `job:index`, as AggregaThor's `--id` names it."""
  job: str
  index: int

  def __str__(self) -> str:
    return f"{self.job}:{self.index}"


class ClusterSpec:
  """The jobs of a cluster and the address of each of their tasks."""

  def __init__(self, jobs: Mapping[str, Sequence[str]], source: str = "the cluster description"):
    if not isinstance(jobs, Mapping) or not jobs:
      raise ClusterError(f"{source}: expected a JSON object of jobs, each a list of \"host:port\" tasks, e.g. "
                         f"{EXAMPLE}; got {json.dumps(jobs)[:200]}")
    self.jobs: dict[str, list[Address]] = {}
    seen: dict[Address, str] = {}
    for job, tasks in jobs.items():
      if not isinstance(job, str) or not JOB_NAME.fullmatch(job):
        raise ClusterError(f"{source}: job name {job!r} must start with a letter and hold only letters, digits, "
                           "'_' and '-'")
      if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
        raise ClusterError(f"{source}: job {job!r} must be a non-empty list of \"host:port\" tasks, got "
                           f"{json.dumps(tasks)[:200]}")
      addresses = []
      for index, task in enumerate(tasks):
        address = parse_address(task, f"{source}: task {job}:{index}")
        if address in seen:
          raise ClusterError(f"{source}: {address} is both task {seen[address]} and task {job}:{index}; "
                             "every task needs its own host:port")
        seen[address] = f"{job}:{index}"
        addresses.append(address)
      self.jobs[job] = addresses

  @classmethod
  def parse(cls, text: str) -> "ClusterSpec":
    """From JSON text, or from the path of a file holding it (text that does not start with '{')."""
    source = "the cluster JSON"
    if not text.lstrip().startswith("{"):
      if not os.path.isfile(text):
        raise ClusterError(f"expected the cluster as JSON (e.g. {EXAMPLE}) or the path of a file holding it; "
                           f"{text!r} is neither")
      source = f"cluster file {text}"
      with open(text, encoding="utf-8") as handle:
        text = handle.read()
    try:
      jobs = json.loads(text)
    except json.JSONDecodeError as error:
      raise ClusterError(f"{source} is not valid JSON ({error}); expected e.g. {EXAMPLE}") from error
    return cls(jobs, source)

  def to_json(self) -> str:
    return json.dumps({job: [str(a) for a in addresses] for job, addresses in self.jobs.items()})

  def tasks(self, job: str, role: str) -> list[Address]:
    """The tasks of `job`, which plays `role` (e.g. "worker job (--wk-job-name)")."""
    if job not in self.jobs:
      raise ClusterError(f"the {role} {job!r} is not in the cluster, whose jobs are {', '.join(sorted(self.jobs))}")
    return self.jobs[job]

  def task_id(self, text: str) -> TaskId:
    """Parses and checks `--id job:index` against this cluster."""
    match = re.fullmatch(r"([^:]+):(\d+)", text.strip())
    if not match:
      raise ClusterError(f"expected --id as job:index (e.g. workers:0), got {text!r}")
    job, index = match[1], int(match[2])
    tasks = self.tasks(job, "job of --id")
    if index >= len(tasks):
      raise ClusterError(f"--id {text}: job {job!r} has {len(tasks)} task(s), indexed 0 to {len(tasks) - 1}")
    return TaskId(job, index)

  def address(self, task: TaskId) -> Address:
    return self.jobs[task.job][task.index]


def parse_address(text: object, what: str) -> Address:
  if not isinstance(text, str):
    raise ClusterError(f"{what}: expected a \"host:port\" string, got {json.dumps(text)}")
  match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
  if not match:
    raise ClusterError(f"{what}: expected \"host:port\" (e.g. 127.0.0.1:7000), got {text!r}")
  host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
  port = int(port)
  if not 1 <= port <= 65535:
    raise ClusterError(f"{what}: port {port} is out of range 1-65535")
  return Address(host, port)
