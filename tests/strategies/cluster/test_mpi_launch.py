"""deploy.py --MPI's mpirun command line and host file (strategies.cluster.mpi_launch), from the cluster JSON."""

from __future__ import annotations

import re

import pytest

from strategies.cluster import mpi_launch
from strategies.cluster.spec import ClusterError, ClusterSpec

# Tasks interleaved over two hosts: rank order must follow the JSON, not the hosts.
SPEC = ClusterSpec({"ps": ["10.0.0.1:7000"], "workers": ["10.0.0.2:7001", "10.0.0.1:7002", "10.0.0.2:7003"]})


def contexts(argv: list[str]) -> list[list[str]]:
  """The application contexts of an MPMD mpirun command, after the global options."""
  first = argv.index("-np")
  groups, current = [], []
  for arg in argv[first:]:
    if arg == ":":
      groups.append(current)
      current = []
    else:
      current.append(arg)
  return groups + [current]


def test_each_rank_runs_on_its_task_host_in_the_cluster_order():
  argv = mpi_launch.command(SPEC, ["--aggregator", "median"], "/tmp/hosts", python="/venv/python", root="/proj")
  assert argv[:8] == ["mpirun", "--hostfile", "/tmp/hosts", "--wdir", "/proj", "--mca", "odls_base_sigkill_timeout",
                      "30"]
  hosts = [group[group.index("--host") + 1] for group in contexts(argv)]
  assert hosts == ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
  for group in contexts(argv):
    assert group[:4] == ["-np", "1", "--host", group[3]]
    assert group[4:] == ["/venv/python", "runner.py", "--MPI", "--nb-workers", "3", "--aggregator", "median"]


def test_the_host_file_gives_each_host_its_number_of_tasks():
  assert mpi_launch.hostfile(SPEC, "ps", "workers") == "10.0.0.1 slots=2\n10.0.0.2 slots=2\n"


def test_given_mpi_and_a_matching_nb_workers_are_kept_once():
  argv = mpi_launch.command(SPEC, ["--MPI", "--nb-workers=3"], "h")
  assert contexts(argv)[0][-2:] == ["--MPI", "--nb-workers=3"]
  assert argv.count("--MPI") == 4


@pytest.mark.parametrize("args, message", [
    (["--nb-workers", "4"], "has --nb-workers 4, and the cluster JSON's worker job 'workers' has 3 task(s)"),
    (["--server", "c.json"], "drop --server from --runner"),
    (["--UDP=2"], "drop --UDP from --runner"),
    (["--nb-workers"], "ends with --nb-workers and no value"),
])
def test_runner_arguments_that_contradict_an_mpi_run_are_refused(args, message):
  with pytest.raises(ClusterError, match=re.escape(message)):
    mpi_launch.command(SPEC, args, "h")


def test_the_parameter_server_job_must_have_one_task():
  spec = ClusterSpec({"ps": ["10.0.0.1:7000", "10.0.0.3:7000"], "workers": ["10.0.0.2:7001"]})
  with pytest.raises(ClusterError, match="has 2 tasks; an MPI run has one, rank 0"):
    mpi_launch.hostfile(spec, "ps", "workers")
  with pytest.raises(ClusterError, match="worker job"):
    mpi_launch.command(SPEC, [], "h", worker_job="trainers")
