#!/usr/bin/env python3
"""Starts an AggregaThor cluster's tasks, here or on their hosts over SSH, watches and stops them.

  python deploy.py --cluster cluster.json --make-credentials creds/     # once: CA + one certificate per task
  python deploy.py --cluster cluster.json --id workers:0 --credentials creds/            # on each worker host
  python deploy.py --cluster cluster.json --id workers:3 --credentials creds/ --attack little   # a Byzantine one
  python runner.py --server cluster.json --credentials creds/ --nb-workers 4 ...   # then, on the PS host
  python deploy.py --cluster cluster.json --id workers:0 --transport tf   # TensorFlow's runtime: trusted networks only

  python deploy.py --cluster cluster.json --credentials creds/ --deploy   # every worker task, over SSH
  python deploy.py --cluster cluster.json --status | --logs DIR | --stop

  python deploy.py --cluster cluster.json --MPI --runner "--aggregator krum --nb-decl-byz-workers 1 ..."
  python deploy.py --cluster cluster.json --id evaluator:0 --supervise RUN_DIR   # AdaComp's Supervisor

The cluster is AggregaThor's JSON, `{"job": ["host:port", ...], ...}`, inline or
in a file. A worker task serves in the foreground until SIGTERM or Ctrl-C, and
takes one run after another: deploy once, then run runner.py many times. The
parameter server (runner.py --server) listens on no port: it calls its workers.
With --MPI, deploy.py instead runs one MPI job, `runner.py --MPI` on every
host of the cluster (rank 0 the parameter server task's, rank i worker i-1's;
see strategies.cluster.mpi_launch), and exits with its status.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="deploy.py", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--cluster", required=True, metavar="JSON",
                      help='full JSON cluster specification ({"job": ["host:port", ...], ...}) or a file holding it')
  parser.add_argument("--id", default=None, metavar="JOB:INDEX", help="this node's task, e.g. workers:0")
  parser.add_argument("--wk-job-name", default="workers", help="worker job name")
  parser.add_argument("--credentials", default=os.environ.get("AGGREGATHOR_CREDENTIALS", "credentials"),
                      metavar="DIR", help="directory of this task's TLS credentials (ca.pem, worker-<i>.pem, "
                      "worker-<i>-key.pem) (default: $AGGREGATHOR_CREDENTIALS or ./credentials)")
  parser.add_argument("--make-credentials", default=None, metavar="DIR",
                      help="write a new CA and the certificates of the parameter server and of every worker task "
                      "into DIR, then exit; give each task its own files, and keep ca-key.pem off the cluster")
  parser.add_argument("--transport", default="grpc", choices=["grpc", "tf"],
                      help="'grpc': this worker serves the parameter server alone, over mutual TLS; 'tf': a "
                      "TensorFlow server, for runner.py --transport tf, which executes any graph anyone who reaches "
                      "its port sends (trusted networks only)")
  parser.add_argument("--attack", default=None,
                      help="make this worker a real Byzantine process running this attack on its own gradients "
                      "(with --deploy: the --byz-workers last worker tasks)")
  parser.add_argument("--attack-args", nargs="*", default=[], metavar="KEY:VALUE",
                      help="additional arguments of the attack, e.g. factor:1.5")
  parser.add_argument("--UDP", type=int, default=0, metavar="N", dest="udp",
                      help="let worker tasks 0 to N-1 send their gradient rows over UDP when the parameter server "
                      "asks (runner.py --UDP): the datagrams are authenticated, not encrypted")
  parser.add_argument("--udp-drop-rate", type=float, default=0.0, metavar="P",
                      help="drop this fraction of this task's datagrams before sending, a stand-in for a lossy "
                      "network where tc cannot make one")
  group = parser.add_argument_group("a HiPS party server (see strategies.cluster.party)")
  group.add_argument("--party-cluster", default=None, metavar="JSON",
                     help="this worker task of the global cluster is a party's server: the party's own cluster, "
                     "whose worker job lists the party's workers in order")
  group.add_argument("--party-credentials", default=None, metavar="DIR",
                     help="with --party-cluster: the party's credentials (its CA and \"ps\" certificate, made with "
                     "`deploy.py --cluster PARTY_JSON --make-credentials DIR`)")
  group.add_argument("--party-step-timeout", type=float, default=5.0,
                     help="with --party-cluster: each step's deadline for the party's workers (give the global PS a "
                     "longer --step-timeout)")
  group.add_argument("--party-start-timeout", type=float, default=120.0,
                     help="with --party-cluster: the first step's deadline, while the party's workers build")
  group = parser.add_argument_group("the Supervisor (see strategies.supervisor)")
  group.add_argument("--ev-job-name", default="evaluator", help="the evaluator job, whose task runs the Supervisor")
  group.add_argument("--supervise", default=None, metavar="CHECKPOINT_DIR",
                     help="with --id EVALUATOR:0: evaluate each checkpoint the parameter server writes in this "
                     "directory (its --checkpoint-dir), as AdaComp's Supervisor")
  group.add_argument("--evaluation-file", default=None, metavar="FILE",
                     help="with --supervise: where the evaluations go (default: CHECKPOINT_DIR/supervisor-eval)")
  group.add_argument("--idle-timeout", type=float, default=600.0,
                     help="with --supervise: stop after this many seconds without a new checkpoint")
  group = parser.add_argument_group("over MPI (see strategies.cluster.mpi_launch)")
  group.add_argument("--MPI", action="store_true", dest="mpi",
                     help="run one MPI job over the cluster's hosts: mpirun starts runner.py --MPI on each, with "
                     "--runner's arguments; no credentials (MPI has no authentication: trusted networks only)")
  group.add_argument("--runner", default="", metavar="ARGS",
                     help="with --MPI: runner.py's arguments, as one string (--MPI and --nb-workers are added)")
  group.add_argument("--ps-job-name", default="ps", help="with --MPI: the parameter server's job (rank 0)")
  group.add_argument("--mpirun-args", default="", metavar="ARGS",
                     help="with --MPI: more mpirun options, as one string, e.g. \"--oversubscribe\"")
  group.add_argument("--dry-run", action="store_true", help="with --MPI: print the mpirun command and host file, "
                     "run nothing")
  group = parser.add_argument_group("over SSH (see strategies.cluster.deployment)")
  actions = group.add_mutually_exclusive_group()
  actions.add_argument("--deploy", action="store_true",
                       help="start every worker task on its host over SSH, detached, then this node's own task "
                       "(--id) here in the foreground unless --omit")
  actions.add_argument("--status", action="store_true", help="say whether each deployed worker task runs, and "
                       "its log's last line")
  actions.add_argument("--stop", action="store_true", help="stop every deployed worker task (SIGTERM, then "
                       "SIGKILL after 15 s)")
  actions.add_argument("--logs", default=None, metavar="DIR", help="fetch each deployed task's log into DIR")
  group.add_argument("--omit", action="store_true", help="with --deploy: do not start this node's own task")
  group.add_argument("--nice", nargs="*", default=None, metavar="JOB",
                     help="jobs whose tasks run at the lowest priority (nice 19); no JOB: the worker job")
  group.add_argument("--byz-workers", type=int, default=0, metavar="N",
                     help="with --deploy and --attack: the last N worker tasks are real Byzantine processes")
  group.add_argument("--ssh-config", default=None, metavar="FILE",
                     help="OpenSSH config giving each host's HostName, Port, User and IdentityFile (default "
                     "~/.ssh/config); given, every host must have a Host block in it")
  group.add_argument("--remote-root", default=None, metavar="DIR",
                     help="where the project is on the hosts (default: this project's path)")
  group.add_argument("--remote-python", default=None, metavar="PATH",
                     help="the project's Python on the hosts (default: REMOTE_ROOT/.venv/bin/python)")
  group.add_argument("--remote-dir", default=".aggregathor", metavar="DIR",
                     help="where each host keeps the deployment's logs, PID files and credentials (relative: in "
                     "the SSH user's home)")
  group.add_argument("--keep-on-failure", action="store_true",
                     help="when a task fails to start, leave the others running (default: stop them)")
  group.add_argument("--start-timeout", type=float, default=120.0,
                     help="seconds each task has to start serving")
  return parser


def over_ssh(flags: argparse.Namespace, spec) -> int:
  """--deploy, --status, --stop and --logs."""
  from strategies.cluster import deployment, ssh  # pylint: disable=g-import-not-at-top
  omit = spec.task_id(flags.id) if flags.id else None
  nice = flags.nice if flags.nice else ([flags.wk_job_name] if flags.nice is not None else [])
  try:
    plan = deployment.Deployment(
        spec, worker_job=flags.wk_job_name, credentials_dir=flags.credentials, ssh_config=flags.ssh_config,
        remote_root=flags.remote_root, remote_python=flags.remote_python, remote_dir=flags.remote_dir,
        nice_jobs=nice, transport=flags.transport, attack=flags.attack, attack_args=flags.attack_args,
        nb_byzantine=flags.byz_workers if flags.deploy else 0, omit=omit, start_timeout=flags.start_timeout,
        udp_workers=flags.udp, udp_drop_rate=flags.udp_drop_rate)
    if flags.status:
      print(deployment.describe(plan.status()))
    elif flags.stop:
      print(deployment.describe(plan.stop()))
    elif flags.logs:
      print(deployment.describe(plan.fetch_logs(flags.logs)))
    else:
      print(f"Deploying {len(plan.tasks)} worker task(s) of {flags.wk_job_name!r} (deployment {plan.id})",
            file=sys.stderr, flush=True)
      plan.start(keep_on_failure=flags.keep_on_failure)
      if omit is not None and not flags.omit and omit.job == flags.wk_job_name:
        from strategies.cluster import worker  # pylint: disable=g-import-not-at-top
        worker.serve(spec.address(omit), omit.index, flags.credentials, udp_workers=flags.udp,
                     udp_drop_rate=flags.udp_drop_rate)
  except (deployment.DeployError, ssh.SSHError) as error:
    print(f"deploy.py: error: {error}", file=sys.stderr)
    return 2
  return 0


def over_mpi(flags: argparse.Namespace, spec) -> int:
  """--MPI: writes the host file, then runs (or prints) the mpirun command; its exit status."""
  import shlex  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from strategies.cluster import mpi_launch  # pylint: disable=g-import-not-at-top
  root = flags.remote_root or os.path.dirname(os.path.abspath(__file__))
  python = flags.remote_python or sys.executable
  hosts = mpi_launch.hostfile(spec, flags.ps_job_name, flags.wk_job_name)
  with tempfile.TemporaryDirectory(prefix="aggregathor-mpi-") as directory:
    path = os.path.join(directory, "hostfile")
    with open(path, "w", encoding="utf-8") as handle:
      handle.write(hosts)
    command = mpi_launch.command(spec, shlex.split(flags.runner), path, ps_job=flags.ps_job_name,
                                 worker_job=flags.wk_job_name, python=python, root=root,
                                 mpirun_args=shlex.split(flags.mpirun_args))
    print(f"Host file:\n{hosts}{mpi_launch.describe(command)}", file=sys.stderr, flush=True)
    if flags.dry_run:
      return 0
    if shutil.which("mpirun") is None:
      raise ValueError("--MPI runs mpirun, which is not on this machine's PATH: install OpenMPI (see the README's "
                       "MPI section)")
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
    process = subprocess.Popen(command, env=environment)
    try:
      return process.wait()
    except KeyboardInterrupt:
      process.terminate()  # mpirun passes it on to every rank
      return process.wait()


def party_responder(flags: argparse.Namespace, index: int):
  """The party server of worker task `index` (--party-cluster and --party-credentials), its flags checked."""
  if not flags.party_cluster or not flags.party_credentials:
    raise ValueError("a party server needs both --party-cluster JSON (its party's workers) and --party-credentials "
                     "DIR (the party's own credentials)")
  clashes = [flag for flag, used in (("--attack", flags.attack), ("--UDP", flags.udp),
                                     ("--transport tf", flags.transport == "tf")) if used]
  if clashes:
    raise ValueError(f"a party server relays its party's rows over the default transport: drop {', '.join(clashes)} "
                     "(a Byzantine party is one whose workers run --attack)")
  for name in ("party_step_timeout", "party_start_timeout"):
    if not getattr(flags, name) > 0:
      raise ValueError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(flags, name)}")
  from strategies.cluster import party  # pylint: disable=g-import-not-at-top
  from strategies.cluster.spec import ClusterSpec  # pylint: disable=g-import-not-at-top
  party_spec = ClusterSpec.parse(flags.party_cluster)
  workers = party_spec.tasks(flags.wk_job_name, "the party's worker job (--wk-job-name)")
  return party.PartyResponder(index, workers, flags.party_credentials,
                              flags.party_step_timeout, flags.party_start_timeout)


def run(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  flags = parser.parse_args(argv)
  from strategies.cluster.spec import ClusterSpec  # pylint: disable=g-import-not-at-top
  try:
    spec = ClusterSpec.parse(flags.cluster)
    workers = spec.tasks(flags.wk_job_name, "worker job (--wk-job-name)")
    if flags.make_credentials:
      from strategies.cluster import credentials  # pylint: disable=g-import-not-at-top
      directory = credentials.make_credentials(flags.make_credentials, len(workers))
      print(f"Credentials of the parameter server and {len(workers)} workers written to {directory}")
      return 0
    if flags.mpi:
      if flags.deploy or flags.status or flags.stop or flags.logs or flags.id or flags.attack:
        parser.error("--MPI runs the whole job with mpirun: give the attack in --runner (--nb-real-byz-workers K "
                     "--attack NAME), and no --id, --attack, --deploy, --status, --stop or --logs")
      return over_mpi(flags, spec)
    if flags.runner or flags.mpirun_args or flags.dry_run:
      parser.error("--runner, --mpirun-args and --dry-run go with --MPI")
    if flags.deploy or flags.status or flags.stop or flags.logs:
      if flags.attack and not flags.byz_workers:
        parser.error("--attack with --deploy needs --byz-workers N: which worker tasks run it")
      return over_ssh(flags, spec)
    if flags.id is None:
      parser.error("give --id JOB:INDEX (this node's task), --deploy, --status, --stop, --logs DIR or "
                   "--make-credentials DIR")
    task = spec.task_id(flags.id)
    if task.job == flags.ev_job_name or flags.supervise:
      if task.job != flags.ev_job_name or not flags.supervise:
        parser.error(f"the Supervisor is a task of the evaluator job ({flags.ev_job_name!r}) given --supervise "
                     "CHECKPOINT_DIR: give both")
      if not flags.idle_timeout > 0:
        parser.error(f"--idle-timeout must be > 0 seconds, got {flags.idle_timeout}")
      from absl import logging  # pylint: disable=g-import-not-at-top
      from strategies import supervisor  # pylint: disable=g-import-not-at-top
      logging.set_verbosity(logging.INFO)
      supervisor.supervise(flags.supervise, flags.evaluation_file or os.path.join(flags.supervise, "supervisor-eval"),
                           flags.idle_timeout)
      return 0
    if task.job != flags.wk_job_name:
      raise ValueError(f"--id {task}: deploy.py starts worker tasks (job {flags.wk_job_name!r}); the parameter "
                       "server is `runner.py --server JSON`, and evaluations run on it")
    if flags.attack_args and not flags.attack:
      parser.error("--attack-args given without --attack")
    if flags.transport == "tf":
      if flags.attack:
        parser.error("--attack: with --transport tf this task runs whatever graph the parameter server sends, so "
                     "its Byzantine workers are simulated there: give runner.py --attack and --nb-real-byz-workers")
      from strategies.cluster import in_graph  # pylint: disable=g-import-not-at-top
      in_graph.serve(spec, task.job, task.index)
      return 0
    attack_args = {}
    if flags.attack:
      import experiments  # pylint: disable=g-import-not-at-top
      from aggregathor import attacks  # pylint: disable=g-import-not-at-top
      attack_args = experiments.typed_pairs(attacks.get(flags.attack).params, flags.attack_args, "--attack-args")
    from strategies.cluster import worker  # pylint: disable=g-import-not-at-top
    if not 0.0 <= flags.udp_drop_rate < 1.0:
      parser.error(f"--udp-drop-rate must be in [0, 1), got {flags.udp_drop_rate}")
    if flags.udp < 0:
      parser.error(f"--UDP must be >= 0, got {flags.udp}")
    responder = None
    if flags.party_cluster or flags.party_credentials:
      responder = party_responder(flags, task.index)
    worker.serve(spec.address(task), task.index, flags.credentials, flags.attack, attack_args,
                 udp_workers=flags.udp, udp_drop_rate=flags.udp_drop_rate, responder=responder)
  except (ValueError, FileNotFoundError) as error:
    print(f"deploy.py: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(run())
