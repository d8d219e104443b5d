"""The `mpirun` command line of an MPI run (`deploy.py --MPI --runner "ARGS"`), from the cluster JSON.

Rank 0 runs on the parameter server task's host and rank i on worker task i-1's
host: one `mpirun` application context per rank, each pinned to its host with
`--host`, and a host file giving each host as many slots as it has tasks. Every
rank runs `runner.py --MPI --nb-workers N ARGS` from the project's directory
(the same path on every host; mpirun reaches the other hosts over its own SSH).
A dying job's ranks get `SIGKILL_TIMEOUT` seconds between mpirun's SIGTERM and
SIGKILL, so that rank 0 can save its checkpoint (mpirun's default is 1 s).
"""

from __future__ import annotations

import collections
import shlex
from typing import Sequence

from strategies.cluster.spec import ClusterError, ClusterSpec

SIGKILL_TIMEOUT = 30
# What every rank needs from the launching environment.
EXPORTED = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")


def hostfile(spec: ClusterSpec, ps_job: str, worker_job: str) -> str:
  """OpenMPI's host file: each host of the parameter server's and workers' tasks, with its number of tasks."""
  slots = collections.Counter(address.host for address in _rank_addresses(spec, ps_job, worker_job))
  return "".join(f"{host} slots={count}\n" for host, count in slots.items())


def command(spec: ClusterSpec, runner_args: Sequence[str], hostfile_path: str, *, ps_job: str = "ps",
            worker_job: str = "workers", python: str = "python3", root: str = ".",
            mpirun_args: Sequence[str] = ()) -> list[str]:
  """The mpirun argv; `runner_args` are runner.py's, without --MPI and --nb-workers (added here) or with them."""
  addresses = _rank_addresses(spec, ps_job, worker_job)
  nb_workers = len(addresses) - 1
  args = list(runner_args)
  for clash in ("--server", "--UDP", "--transport"):
    if any(arg == clash or arg.startswith(clash + "=") for arg in args):
      raise ClusterError(f"--runner {clash}: an MPI run's workers are the MPI job's ranks and their rows go "
                         f"through it; drop {clash} from --runner")
  given = _option_value(args, "--nb-workers")
  if given is not None and given != str(nb_workers):
    raise ClusterError(f"--runner has --nb-workers {given}, and the cluster JSON's worker job {worker_job!r} has "
                       f"{nb_workers} task(s): make them match, or drop --nb-workers from --runner")
  if given is None:
    args = ["--nb-workers", str(nb_workers)] + args
  if "--MPI" not in args:
    args = ["--MPI"] + args
  argv = ["mpirun", "--hostfile", hostfile_path, "--wdir", root, "--mca", "odls_base_sigkill_timeout",
          str(SIGKILL_TIMEOUT)]
  for variable in EXPORTED:
    argv += ["-x", variable]
  argv += list(mpirun_args)
  for rank, address in enumerate(addresses):
    if rank:
      argv.append(":")
    argv += ["-np", "1", "--host", address.host, python, "runner.py"] + args
  return argv


def describe(argv: Sequence[str]) -> str:
  """The command as a shell line."""
  return shlex.join(argv)


def _rank_addresses(spec: ClusterSpec, ps_job: str, worker_job: str):
  ps_tasks = spec.tasks(ps_job, "parameter server job (--ps-job-name)")
  if len(ps_tasks) != 1:
    raise ClusterError(f"the parameter server job {ps_job!r} has {len(ps_tasks)} tasks; an MPI run has one, rank 0")
  return ps_tasks + spec.tasks(worker_job, "worker job (--wk-job-name)")


def _option_value(args: Sequence[str], name: str) -> str | None:
  for index, arg in enumerate(args):
    if arg == name:
      if index + 1 >= len(args):
        raise ClusterError(f"--runner ends with {name} and no value")
      return args[index + 1]
    if arg.startswith(name + "="):
      return arg.split("=", 1)[1]
  return None
