"""`deploy.py --deploy/--status/--stop/--logs`: a cluster's worker tasks, started, watched and stopped over SSH.

Each worker task runs `deploy.py --cluster JSON --id workers:I` on its host,
detached, with its log and PID file in `~/.aggregathor/<cluster id>/` there
(the id is a hash of the cluster JSON, so that `--status` and `--stop` find
them later; `remote_dir` moves that folder). No shared file system is assumed: the cluster JSON and each
task's own credentials (the CA certificate, its certificate and its key, mode
0600 in a 0700 folder) are copied over SFTP. The remote side needs the
project at `remote_root` and its Python at `remote_python` (default: the
project's `.venv`), and gets PYTHONPATH set to the project.

Hosts are reached in parallel, one connection each (see `ssh`). A failure on
one host names it; the tasks already started are then stopped, or left
running if asked.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import os
import sys
from typing import Sequence

from strategies.cluster import credentials, ssh
from strategies.cluster.spec import Address, ClusterSpec, TaskId

DEFAULT_REMOTE_DIR = ".aggregathor"  # relative: in the remote user's home


@dataclasses.dataclass(frozen=True)
class Task:
  task: TaskId
  address: Address
  byzantine: bool = False

  @property
  def name(self) -> str:
    return f"{self.task.job}-{self.task.index}"


@dataclasses.dataclass
class TaskState:
  task: Task
  state: str  # "running", "stopped", "killed", "started", "failed", "unreachable"
  detail: str = ""


class Deployment:
  """The worker tasks of `spec` (those of `worker_job`, but `omit`), on their hosts."""

  def __init__(self, spec: ClusterSpec, *, worker_job: str = "workers", credentials_dir: str = "credentials",
               ssh_config: str | None = None, remote_root: str | None = None, remote_python: str | None = None,
               remote_dir: str = DEFAULT_REMOTE_DIR, nice_jobs: Sequence[str] = (), transport: str = "grpc",
               attack: str | None = None,
               attack_args: Sequence[str] = (), nb_byzantine: int = 0, omit: TaskId | None = None,
               start_timeout: float = 120.0, udp_workers: int = 0, udp_drop_rate: float = 0.0, progress=None):
    self.spec = spec
    self.worker_job = worker_job
    addresses = spec.tasks(worker_job, "worker job (--wk-job-name)")
    if not 0 <= nb_byzantine <= len(addresses):
      raise ValueError(f"--byz-workers {nb_byzantine}: the worker job has {len(addresses)} tasks")
    if nb_byzantine and not attack:
      raise ValueError("--byz-workers needs --attack NAME: the attack those workers run")
    self.tasks = [Task(TaskId(worker_job, i), address, byzantine=i >= len(addresses) - nb_byzantine)
                  for i, address in enumerate(addresses) if TaskId(worker_job, i) != omit]
    self.credentials_dir = credentials_dir
    self.ssh_config = ssh_config if ssh_config is not None else ssh.DEFAULT_CONFIG
    if ssh_config is not None:
      if not os.path.isfile(ssh_config):
        raise ValueError(f"--ssh-config {ssh_config}: no such file")
      ssh.check_in_config(sorted({task.address.host for task in self.tasks}), ssh_config)
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    self.remote_root = remote_root or project
    self.remote_python = remote_python or os.path.join(self.remote_root, ".venv", "bin", "python")
    self.nice_jobs = set(nice_jobs)
    self.transport = transport
    self.attack = attack
    self.attack_args = list(attack_args)
    self.start_timeout = start_timeout
    self.udp_workers = udp_workers
    self.udp_drop_rate = udp_drop_rate
    self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    self.id = hashlib.sha256(spec.to_json().encode()).hexdigest()[:12]
    self.remote_dir = remote_dir.rstrip("/") or "/"
    self.state_dir = f"{self.remote_dir}/{self.id}"

  # The remote commands.

  def _start_command(self, task: Task) -> str:
    command = [self.remote_python, f"{self.remote_root}/deploy.py", "--cluster", "cluster.json", "--id",
               str(task.task), "--wk-job-name", self.worker_job, "--credentials", f"credentials-{task.name}",
               "--transport", self.transport]
    if self.udp_workers:
      command += ["--UDP", str(self.udp_workers), "--udp-drop-rate", str(self.udp_drop_rate)]
    if task.byzantine:
      command += ["--attack", self.attack] + (["--attack-args", *self.attack_args] if self.attack_args else [])
    if task.task.job in self.nice_jobs:
      command = ["nice", "-n", "19", *command]
    log, pid = f"{task.name}.log", f"{task.name}.pid"
    wait = int(self.start_timeout / 0.25)
    return (f"cd {ssh.quote(self.state_dir)} && "
            f"if [ -f {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then "
            f"echo \"{task.task} is already running (pid $(cat {pid})): deploy.py --stop first\"; exit 17; fi; "
            f"PYTHONPATH={ssh.quote(self.remote_root)} setsid nohup {ssh.quote(*command)} > {log} 2>&1 < /dev/null & "
            f"echo $! > {pid}; "
            f"for i in $(seq {wait}); do grep -q 'serving on' {log} && exit 0; "
            f"kill -0 \"$(cat {pid})\" 2>/dev/null || {{ tail -n 5 {log}; exit 3; }}; sleep 0.25; done; "
            f"tail -n 5 {log}; exit 4")

  def _status_command(self, task: Task) -> str:
    log, pid = f"{task.name}.log", f"{task.name}.pid"
    return (f"cd {ssh.quote(self.state_dir)} 2>/dev/null || {{ echo never-deployed; exit 0; }}; "
            f"if [ -f {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null; then echo \"running pid $(cat {pid})\"; "
            f"else echo stopped; fi; tail -n 1 {log} 2>/dev/null")

  def _stop_command(self, task: Task) -> str:
    pid = f"{task.name}.pid"
    return (f"cd {ssh.quote(self.state_dir)} 2>/dev/null || exit 0; [ -f {pid} ] || {{ echo stopped; exit 0; }}; "
            f"p=$(cat {pid}); kill -TERM \"$p\" 2>/dev/null; "
            f"for i in $(seq 60); do kill -0 \"$p\" 2>/dev/null || {{ rm -f {pid}; echo stopped; exit 0; }}; "
            f"sleep 0.25; done; kill -KILL \"$p\" 2>/dev/null; rm -f {pid}; echo killed")

  # The actions, each over every host at once.

  def _by_host(self) -> dict[str, list[Task]]:
    hosts: dict[str, list[Task]] = {}
    for task in self.tasks:
      hosts.setdefault(task.address.host, []).append(task)
    return hosts

  async def _on_hosts(self, action) -> list[TaskState]:
    async def on_host(host: str, tasks: list[Task]) -> list[TaskState]:
      connection = ssh.Host(host, self.ssh_config)
      try:
        await connection.connect()
        return [await action(connection, task) for task in tasks]
      except ssh.SSHError as error:
        return [TaskState(task, "unreachable", str(error)) for task in tasks]
      finally:
        connection.close()

    per_host = await asyncio.gather(*(on_host(host, tasks) for host, tasks in self._by_host().items()))
    return [state for states in per_host for state in states]

  def start(self, keep_on_failure: bool = False) -> list[TaskState]:
    """Starts every task; if one fails, the others are stopped (unless `keep_on_failure`) and `DeployError` raised."""
    for task in self.tasks:
      credentials.read_identity(self.credentials_dir, credentials.worker_identity(task.task.index))
    cluster_file = os.path.join(os.path.abspath(self.credentials_dir), f".cluster-{self.id}.json")
    with open(cluster_file, "w", encoding="utf-8") as handle:
      handle.write(self.spec.to_json())
    done = [0]

    async def start_task(host: ssh.Host, task: Task) -> TaskState:
      await host.run(f"mkdir -p {ssh.quote(self.state_dir)} && chmod 700 {ssh.quote(self.remote_dir, self.state_dir)} "
                     f"&& mkdir -p -m 700 {ssh.quote(self.state_dir)}/credentials-{task.name}")
      identity = credentials.worker_identity(task.task.index)
      remote = f"{self.state_dir}/credentials-{task.name}"
      await host.put({cluster_file: f"{self.state_dir}/cluster.json",
                      os.path.join(self.credentials_dir, "ca.pem"): f"{remote}/ca.pem",
                      os.path.join(self.credentials_dir, f"{identity}.pem"): f"{remote}/{identity}.pem",
                      os.path.join(self.credentials_dir, f"{identity}-key.pem"): f"{remote}/{identity}-key.pem"})
      result = await host.run(self._start_command(task), check=False, timeout=self.start_timeout + 30)
      done[0] += 1
      if result.exit_status == 0:
        self.progress(f"[{done[0]}/{len(self.tasks)}] {task.task} started on {task.address.host}")
        return TaskState(task, "started")
      output = str(result.stdout or "").strip()[-1500:]
      self.progress(f"[{done[0]}/{len(self.tasks)}] {task.task} FAILED on {task.address.host}")
      return TaskState(task, "failed", output or f"exit status {result.exit_status}")

    try:
      states = asyncio.run(self._on_hosts(start_task))
    finally:
      os.remove(cluster_file)
    failed = [state for state in states if state.state not in ("started",)]
    if failed:
      stopped = ""
      if not keep_on_failure:
        started = [state.task for state in states if state.state == "started"]
        self._restricted(started).stop()
        stopped = f"; the {len(started)} task(s) started were stopped" if started else ""
      raise DeployError("\n  ".join([f"{len(failed)} task(s) could not start{stopped}:"] + [
          f"{state.task.task} on {state.task.address.host}: {state.detail}" for state in failed]))
    return states

  def status(self) -> list[TaskState]:
    async def status_of(host: ssh.Host, task: Task) -> TaskState:
      lines = str((await host.run(self._status_command(task))).stdout or "").strip().splitlines()
      state = (lines[0].split()[0] if lines else "stopped").replace("never-deployed", "stopped")
      return TaskState(task, state, " ".join(lines[0].split()[1:] + ["|"] + lines[1:2]) if lines else "")

    return asyncio.run(self._on_hosts(status_of))

  def stop(self) -> list[TaskState]:
    async def stop_task(host: ssh.Host, task: Task) -> TaskState:
      lines = str((await host.run(self._stop_command(task), timeout=30)).stdout or "").split()
      return TaskState(task, lines[-1] if lines else "stopped")

    return asyncio.run(self._on_hosts(stop_task))

  def fetch_logs(self, directory: str) -> list[TaskState]:
    os.makedirs(directory, exist_ok=True)

    async def fetch(host: ssh.Host, task: Task) -> TaskState:
      local = os.path.join(directory, f"{task.name}.log")
      await host.get(f"{self.state_dir}/{task.name}.log", local)
      return TaskState(task, "fetched", local)

    return asyncio.run(self._on_hosts(fetch))

  def _restricted(self, tasks: list[Task]) -> "Deployment":
    other = copy.copy(self)
    other.tasks = list(tasks)
    return other


class DeployError(RuntimeError):
  """Some tasks could not start; the message names each with its host and why."""


def describe(states: Sequence[TaskState]) -> str:
  """One line per task: its id, host, state and detail."""
  return "\n".join(f"{str(s.task.task):<14} {s.task.address.host:<24} {s.state:<11} {s.detail}".rstrip()
                   for s in states)
