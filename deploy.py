#!/usr/bin/env python3
"""Starts this node's task of an AggregaThor cluster, or makes the cluster's credentials.

  python deploy.py --cluster cluster.json --make-credentials creds/     # once: CA + one certificate per task
  python deploy.py --cluster cluster.json --id workers:0 --credentials creds/            # on each worker host
  python deploy.py --cluster cluster.json --id workers:3 --credentials creds/ --attack little   # a Byzantine one
  python runner.py --server cluster.json --credentials creds/ --nb-workers 4 ...   # then, on the PS host
  python deploy.py --cluster cluster.json --id workers:0 --transport tf   # TensorFlow's runtime: trusted networks only

The cluster is AggregaThor's JSON, `{"job": ["host:port", ...], ...}`, inline or
in a file. A worker task serves in the foreground until SIGTERM or Ctrl-C, and
takes one run after another: deploy once, then run runner.py many times. The
parameter server (runner.py --server) listens on no port: it calls its workers.
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
                      help="make this worker a real Byzantine process running this attack on its own gradients")
  parser.add_argument("--attack-args", nargs="*", default=[], metavar="KEY:VALUE",
                      help="additional arguments of the attack, e.g. factor:1.5")
  return parser


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
    if flags.id is None:
      parser.error("give --id JOB:INDEX (this node's task) or --make-credentials DIR")
    task = spec.task_id(flags.id)
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
    worker.serve(spec.address(task), task.index, flags.credentials, flags.attack, attack_args)
  except (ValueError, FileNotFoundError) as error:
    print(f"deploy.py: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(run())
