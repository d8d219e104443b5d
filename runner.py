#!/usr/bin/env python3
"""Trains an experiment with a robust gradient aggregation rule, some workers being Byzantine.

AggregaThor's command line, on one machine: one replica per worker on this
machine's logical devices, a trusted parameter server that aggregates the
workers' gradients with `--aggregator`, and `--nb-real-byz-workers` Byzantine
workers that run `--attack` (or train on flipped labels with `--label-flip`).

  python runner.py --experiment mnist --experiment-args idx-dir:../shared/data/mnist \
      --aggregator krum --nb-workers 11 --nb-decl-byz-workers 2 --nb-real-byz-workers 2 \
      --attack little --max-steps 1000 --evaluation-file eval.tsv --summary-dir runs/krum

Arguments given as `key:value` are typed by their defaults; an unknown key or a
value of the wrong type is an error that says what is expected. `-delta`
options count steps and `-period` options count seconds; a non-positive value
disables either trigger. The training loop itself is `strategies.training`.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=g-import-not-at-top

# The same names as strategies.training.OPTIMIZERS, which needs TensorFlow: --help does not.
OPTIMIZERS = ["adadelta", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "nadam", "rmsprop", "sgd"]
SCHEDULES = ["cosine", "exponential", "fixed", "inverse-time", "polynomial"]
PLACEMENTS = ["detox", "mols", "ramanujan-1", "ramanujan-2"]  # aggregathor.redundancy's, listed here for --help
COMPRESSORS = ["2bit", "adacomp", "topk"]  # aggregathor.compression's
BYZANTINE_SETS = ["worst", "random", "fixed", "benign", "whole-group"]  # strategies.redundancy's
# ByzShield's --approach (kkonstantinidis/ByzShield, src/util.py): the placement (None: no redundancy), the
# Byzantine set by default, and the rule it forces across the voted files (None: --aggregator). Its
# `_generate_adversarial_nodes` draws a random set each step (`random`) or takes the worst set from its tables
# (`worst`); `draco_lite_attack` is ByzShield's attack on DETOX, `_attack_detox`; `maj_vote` is Draco's
# repetition code: DETOX's groups, the vote, and the mean of the voted files.
APPROACHES = {
    "baseline": (None, None, None),
    "mols": ("mols", "worst", None),
    "rama_one": ("ramanujan-1", "worst", None),
    "rama_two": ("ramanujan-2", "worst", None),
    "draco-lite": ("detox", "random", None),
    "draco_lite_attack": ("detox", "worst", None),
    "maj_vote": ("detox", "random", "average"),
}
NONE = "-"  # for an output path: write nothing of that kind


class UsageError(ValueError):
  """A bad command line: reported as `runner.py: error: ...`, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  pairs = dict(nargs="*", default=[], metavar="KEY:VALUE")
  group = parser.add_argument_group("experiment")
  group.add_argument("--experiment", default="digits", help="experiment to run: a model + dataset pair "
                     "(digits, mnist, fashion-mnist, cifar10, cifar100, svhn)")
  group.add_argument("--experiment-args", **pairs, help="additional arguments of the experiment, e.g. "
                     "idx-dir:../shared/data/mnist model:lenet batch-size:32 alpha:0.5 (non-iid Dirichlet split)")
  group.add_argument("--seed", type=int, default=0, help="seed of the data split, shuffling and model initialisation")
  group = parser.add_argument_group("aggregation and attack")
  group.add_argument("--aggregator", default="average",
                     help="gradient aggregation rule to use, optionally after pre-aggregations: nnm>krum")
  group.add_argument("--aggregator-args", **pairs, help="additional arguments of the rule (or of a chain's stages)")
  group.add_argument("--nb-workers", type=int, default=1, help="total number of workers, Byzantine ones included")
  group.add_argument("--nb-decl-byz-workers", type=int, default=0,
                     help="number of declared Byzantine workers, the f the rule tolerates")
  group.add_argument("--nb-real-byz-workers", type=int, default=0,
                     help="number of real Byzantine workers: the last that many workers")
  group.add_argument("--attack", default=None, help="attack the real Byzantine workers run (see aggregathor.attacks)")
  group.add_argument("--attack-args", **pairs, help="additional arguments of the attack, e.g. factor:1.5")
  group.add_argument("--label-flip", action="store_true",
                     help="data attack: the Byzantine workers train on flipped labels (instead of --attack)")
  group = parser.add_argument_group("redundancy defences (DETOX, ByzShield; see strategies.redundancy)")
  group.add_argument("--approach", default=None, choices=list(APPROACHES),
                     help="ByzShield's names for a setting: baseline (no redundancy), mols, rama_one, rama_two "
                     "(ByzShield against its worst-case set), draco-lite (DETOX, a random set each step), "
                     "draco_lite_attack (DETOX against ByzShield's attack on it, or --byzantine-set benign or "
                     "whole-group), maj_vote (Draco's repetition code: DETOX's vote, then the mean); sets "
                     "--redundancy and the default --byzantine-set")
  group.add_argument("--redundancy", default=None, choices=PLACEMENTS,
                     help="place each file (part of the batch) on --replication workers, vote per file, then run "
                     "--aggregator across the voted files; --nb-workers workers, --nb-real-byz-workers of them "
                     "Byzantine, all their copies sending --attack's vector")
  group.add_argument("--replication", type=int, default=3, help="copies of each file (r)")
  group.add_argument("--redundancy-args", nargs="*", default=[], metavar="KEY:VALUE",
                     help="additional arguments of the placement, e.g. m:10 for ramanujan-2")
  group.add_argument("--byzantine-set", default=None, choices=BYZANTINE_SETS,
                     help="which workers are Byzantine: the set distorting the most files (the placement's worst "
                     "case), a random set each step, --byzantine-workers, or DETOX's benign (one per group) and "
                     "whole-group (the first q workers) attacks; by default worst, or --approach's")
  group.add_argument("--byzantine-workers", type=int, nargs="*", default=None, metavar="I",
                     help="with --byzantine-set fixed: the Byzantine workers, 0-indexed")
  group.add_argument("--buckets", type=int, default=None,
                     help="average the voted files in this many buckets before the rule (ByzShield's --bucket-size)")
  group = parser.add_argument_group("gradient compression (see aggregathor.compression)")
  group.add_argument("--compression", default=None, choices=COMPRESSORS,
                     help="each worker sends this compressor's payload (adacomp: Hardy et al.'s per-variable top-k; "
                     "topk: top-k with error feedback; 2bit: MXNet's 2-bit quantisation), decoded before the rule")
  group.add_argument("--compression-args", nargs="*", default=[], metavar="KEY:VALUE",
                     help="arguments of the compressor, e.g. compression_rate:0.01, ratio:0.01 error_feedback:false, "
                     "threshold:0.5")
  group.add_argument("--asynchronous", action="store_true",
                     help="AdaComp's asynchronous parameter server: each worker's gradient, computed on the "
                     "weights it fetched, is applied alone as it arrives, each coordinate divided by its "
                     "staleness; the workers' compute times are simulated (see --delay-spread)")
  group.add_argument("--delay-spread", type=float, default=1.0,
                     help="with --asynchronous: worker i's mean compute time is 1 + spread·i/(n-1)")
  group = parser.add_argument_group("HiPS: two levels of parameter servers (see strategies.hierarchy)")
  group.add_argument("--parties", type=int, default=0, metavar="P",
                     help="cut the workers into P contiguous parties, each aggregated by --aggregator with "
                     "--nb-decl-byz-workers per party, then the parties by --global-aggregator (0: one level)")
  group.add_argument("--global-aggregator", default="average", help="with --parties: the rule across the parties")
  group.add_argument("--global-aggregator-args", **pairs, help="arguments of --global-aggregator")
  group.add_argument("--nb-decl-byz-parties", type=int, default=0,
                     help="with --parties: the parties declared Byzantine, the f of --global-aggregator")
  group.add_argument("--party-compression", default=None, choices=COMPRESSORS,
                     help="with --parties: compress each party's push to the global PS (HiPS: 2bit), with the "
                     "party's own residual")
  group.add_argument("--party-compression-args", **pairs, help="arguments of --party-compression, e.g. "
                     "threshold:0.001")
  group.add_argument("--global-update", default="asgd", choices=["asgd", "dc-asgd"],
                     help="with --parties and --asynchronous: how the global PS applies each party's aggregate as "
                     "it arrives, ASGD (w <- w - lr*g) or DC-ASGD's delay compensation (Zheng et al., ICML 2017)")
  group.add_argument("--dc-lambda", type=float, default=0.04, help="with --global-update dc-asgd: its lambda")
  group.add_argument("--dc-weight-decay", type=float, default=0.0,
                     help="with --global-update dc-asgd: its weight decay wd")
  group = parser.add_argument_group("optimisation")
  group.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, help="Keras optimizer to use")
  group.add_argument("--optimizer-args", **pairs, help="additional arguments of the Keras optimizer, dashed, "
                     "e.g. weight-decay:0.0005")
  group.add_argument("--learning-rate", default="fixed", choices=SCHEDULES, help="learning-rate schedule to use")
  group.add_argument("--learning-rate-args", **pairs, help="additional arguments of the schedule, "
                     "e.g. initial-rate:0.1 decay-steps:1000")
  group.add_argument("--l1-regularize", type=float, default=0.0, help="L1 penalty on the trainable kernels")
  group.add_argument("--l2-regularize", type=float, default=0.0, help="L2 penalty on the trainable kernels")
  group.add_argument("--momentum", type=float, default=0.0, help="momentum of the robust pipeline")
  group.add_argument("--momentum-at", default="update", choices=["update", "worker", "server"],
                     help="where the momentum is: at the update (server side), at each worker, or at the server "
                     "per worker")
  group.add_argument("--dampening", type=float, default=0.0, help="dampening of the momentum")
  group.add_argument("--nesterov", action="store_true",
                     help="Nesterov's momentum: each worker computes its gradient at the weights moved ahead by "
                          "-lr * momentum * m, m its momentum (--momentum-at worker or server) or the update's")
  group.add_argument("--gradient-clip", type=float, default=None, help="L2 norm the honest gradients are clipped at")
  group.add_argument("--local-steps", type=int, default=1,
                     help="local SGD steps between communications; >1 sends model deltas (FedAvg-style)")
  group.add_argument("--local-epochs", type=float, default=0.0, metavar="E",
                     help="instead of --local-steps: E passes over each worker's share of the training set between "
                     "communications (FedAvg, HiPS's -le), as local steps of the experiment's batch size")
  group.add_argument("--max-steps", type=int, default=1000, help="number of additional steps to perform before "
                     "stopping, on top of a resumed checkpoint's; non-positive for no limit")
  group = parser.add_argument_group("outputs")
  group.add_argument("--checkpoint-dir", default=None, help="checkpoint directory to use, created if missing; a "
                     "rerun resumes from its last checkpoint")
  group.add_argument("--checkpoint-delta", type=int, default=-1,
                     help="save a checkpoint every that many steps, non-positive for unused")
  group.add_argument("--checkpoint-period", type=float, default=600,
                     help="save a checkpoint at least every that many seconds, non-positive for unused")
  group.add_argument("--summary-dir", default=None,
                     help=f"TensorBoard summaries directory to use, '{NONE}' for none (default: --checkpoint-dir)")
  group.add_argument("--summary-delta", type=int, default=-1,
                     help="write the summaries every that many steps, non-positive for unused")
  group.add_argument("--summary-period", type=float, default=30,
                     help="write the summaries at least every that many seconds, non-positive for unused")
  group.add_argument("--evaluation-file", default=None, help="file to append the accuracy evaluations to, one "
                     "line each: walltime<TAB>step<TAB>name:value...; "
                     f"'{NONE}' for none (default: <checkpoint dir>/eval)")
  group.add_argument("--evaluation-delta", type=int, default=-1,
                     help="evaluate every that many steps, non-positive for unused")
  group.add_argument("--evaluation-period", type=float, default=60,
                     help="evaluate at least every that many seconds, non-positive for unused")
  group.add_argument("--study-period", type=int, default=0,
                     help="record the per-step study metrics every that many steps (0: off)")
  group.add_argument("--study-file", default=None, help="CSV of the study metrics (header line starts with #)")
  group.add_argument("--log-period", type=float, default=10,
                     help="seconds between progress lines, non-positive for none")
  group = parser.add_argument_group("cluster (see strategies.cluster)")
  group.add_argument("--server", default=None, metavar="JSON", help="full JSON cluster specification "
                     '({"job": ["host:port", ...], ...}) or the path of a file holding it, on which to act as the '
                     "only parameter server; the worker tasks must be running (deploy.py --cluster JSON --id ...)")
  group.add_argument("--client", default=None, metavar="URL",
                     help="AggregaThor's client of a remote TensorFlow server: refused, see the error it gives")
  group.add_argument("--ps-job-name", default="ps", help="parameter server job name (one task)")
  group.add_argument("--wk-job-name", default="workers", help="worker job name; the parameter server's own job "
                     "means AggregaThor's local mode, every worker simulated in this process")
  group.add_argument("--ev-job-name", default=None, help="evaluator job name, checked against the cluster if "
                     "given; the evaluations run on the parameter server, the one trusted task")
  group.add_argument("--credentials", default=os.environ.get("AGGREGATHOR_CREDENTIALS", "credentials"),
                     metavar="DIR", help="directory of the parameter server's TLS credentials (ca.pem, ps.pem, "
                     "ps-key.pem), made by deploy.py --make-credentials (default: $AGGREGATHOR_CREDENTIALS or "
                     "./credentials)")
  group.add_argument("--transport", default="grpc", choices=["grpc", "tf"],
                     help="how the parameter server reaches the workers: 'grpc', a narrow mutual-TLS service on the "
                     "workers that this process calls and that runs nothing they send; or 'tf', TensorFlow's own "
                     "runtime in-graph as the original AggregaThor (every task, this one included, then runs a "
                     "TensorFlow server that executes any graph it is sent: trusted networks only; --attack "
                     "simulates the Byzantine workers here)")
  group.add_argument("--MPI", action="store_true", dest="mpi",
                     help="run as one rank of an MPI job (mpirun -np N+1 python runner.py --MPI ...): rank 0 is the "
                     "parameter server, ranks 1 to N the workers, the last --nb-real-byz-workers of them running "
                     "--attack; the rows go through Horovod's collectives, which have no authentication (see the "
                     "README's MPI section)")
  group.add_argument("--step-timeout", type=float, default=10.0,
                     help="seconds each step waits for the workers' rows; a step goes on without the late ones "
                     "while the rule's condition holds on the rows received")
  group.add_argument("--start-timeout", type=float, default=120.0,
                     help="seconds the workers have to take the job and answer the first step")
  group.add_argument("--UDP", type=int, default=0, metavar="N", dest="udp",
                     help="the first N workers send their gradient rows as UDP datagrams, authenticated (HMAC-SHA256, "
                     "a key per worker and run) but not encrypted, to this parameter server's task address in the "
                     "cluster JSON; lost chunks are filled by --udp-fill (the workers must run deploy.py --UDP N)")
  group.add_argument("--udp-datagram-bytes", type=int, default=1472,
                     help="each datagram's size; 1472 fits a 1500-byte MTU, so a lost packet loses one chunk")
  group.add_argument("--udp-fill", default="nan", choices=["nan", "zero", "last"],
                     help="what a lost chunk's coordinates become: NaN (for coordinate-wise rules), 0, or the "
                     "worker's last value received there")
  group.add_argument("--udp-linger", type=float, default=0.005,
                     help="seconds to wait for a UDP worker's late datagrams once its answer is in (the step's "
                     "deadline bounds it too)")
  group = parser.add_argument_group("devices and process")
  group.add_argument("--use-gpu", action="store_true", help="use GPU devices if available, one per worker "
                     "(without a GPU: a warning, and the workers run on the CPU)")
  group.add_argument("--reuse-gpu", action="store_true",
                     help="let several workers share a GPU; implies --use-gpu")
  group.add_argument("--use-tpu", action="store_true", help="use TPU devices if available (without one: a "
                     "warning, and the workers run on the CPU or GPUs)")
  group.add_argument("--reuse-tpu", action="store_true", help="let several workers share a TPU; implies --use-tpu")
  group.add_argument("--no-wait", action="store_true",
                     help="exit as soon as --max-steps are done, without the final evaluation")
  group.add_argument("--trace", action="store_true",
                     help="log every step's timing; with a summary directory, also a profiler trace of steps 5-9")
  group.add_argument("--stdout-to", default=None,
                     help=f"redirect standard output to this file, overwritten if it exists; '{NONE}' for none")
  group.add_argument("--stderr-to", default=None,
                     help=f"redirect standard error to this file, overwritten if it exists; '{NONE}' for none")
  return parser


def resolve_approach(flags: argparse.Namespace) -> None:
  """Sets --redundancy, --byzantine-set and --aggregator from ByzShield's --approach, refusing contradictions."""
  if flags.approach is None:
    flags.byzantine_set = flags.byzantine_set or "worst"
    return
  placement, byzantine_set, rule = APPROACHES[flags.approach]
  if flags.redundancy not in (None, placement):
    raise UsageError(f"--approach {flags.approach} is the placement {placement or 'of no redundancy'}; drop "
                     f"--redundancy {flags.redundancy}, or drop --approach")
  if rule is not None and flags.aggregator not in ("average", rule):
    raise UsageError(f"--approach {flags.approach} averages the voted files; drop --aggregator {flags.aggregator}, "
                     f"or use --approach draco-lite to run a robust rule across them")
  if placement is None and flags.byzantine_set is not None:
    raise UsageError(f"--byzantine-set is for a redundancy defence; --approach baseline has none (its Byzantine "
                     f"workers are the last --nb-real-byz-workers)")
  if flags.approach == "draco_lite_attack" and flags.byzantine_set not in (None, "worst", "benign", "whole-group"):
    raise UsageError(f"--approach draco_lite_attack is DETOX against DETOX's attacks: --byzantine-set worst, "
                     f"benign or whole-group, got {flags.byzantine_set}")
  flags.redundancy = placement
  flags.byzantine_set = flags.byzantine_set or byzantine_set or "worst"
  flags.aggregator = rule or flags.aggregator


def check_flags(flags: argparse.Namespace) -> None:
  """Checks what argparse cannot, before TensorFlow starts."""
  resolve_approach(flags)
  for name in ("nb_workers", "local_steps"):
    if getattr(flags, name) < 1:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(flags, name)}")
  for name in ("nb_decl_byz_workers", "nb_real_byz_workers", "study_period"):
    if getattr(flags, name) < 0:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(flags, name)}")
  if flags.nb_real_byz_workers >= flags.nb_workers:
    raise UsageError(f"--nb-real-byz-workers ({flags.nb_real_byz_workers}) must leave at least one honest worker "
                     f"out of --nb-workers ({flags.nb_workers})")
  if flags.attack and flags.label_flip:
    raise UsageError("--label-flip makes the Byzantine workers send the gradients of flipped labels; it cannot be "
                     "combined with --attack, which replaces those gradients")
  if (flags.attack or flags.label_flip) and flags.nb_real_byz_workers == 0:
    raise UsageError("--attack/--label-flip need --nb-real-byz-workers >= 1 Byzantine workers")
  if flags.attack_args and not flags.attack:
    raise UsageError("--attack-args given without --attack")
  for name in ("l1_regularize", "l2_regularize"):
    if not getattr(flags, name) >= 0:
      raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(flags, name)}")
  if flags.study_file and flags.study_period == 0:
    raise UsageError("--study-file needs --study-period > 0")
  if flags.client:
    raise UsageError("--client connected to a TensorFlow server to run the training graph there; TensorFlow's "
                     "servers execute any graph they are sent, so this parameter server runs the loop itself and "
                     "exposes no port: run runner.py on the parameter server's host with --server JSON instead")
  for name in ("step_timeout", "start_timeout"):
    if not getattr(flags, name) > 0:
      raise UsageError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(flags, name)}")
  if flags.parties < 0 or flags.nb_decl_byz_parties < 0:
    raise UsageError(f"--parties and --nb-decl-byz-parties must be >= 0, got {flags.parties} and "
                     f"{flags.nb_decl_byz_parties}")
  if not flags.parties and (flags.global_aggregator != "average" or flags.global_aggregator_args
                            or flags.nb_decl_byz_parties or flags.party_compression):
    raise UsageError("--global-aggregator, --nb-decl-byz-parties and --party-compression are HiPS's: give "
                     "--parties P too")
  if not flags.local_epochs >= 0 or (flags.local_epochs and flags.local_steps != 1):
    raise UsageError(f"--local-epochs must be >= 0 and stands for --local-steps: give one of them, got "
                     f"--local-epochs {flags.local_epochs} and --local-steps {flags.local_steps}")
  if not flags.asynchronous and (flags.global_update != "asgd" or flags.dc_lambda != 0.04 or flags.dc_weight_decay):
    raise UsageError("--global-update, --dc-lambda and --dc-weight-decay are for HiPS's asynchronous global PS: give "
                     "--parties P and --asynchronous too")
  if flags.mpi:
    clashes = [flag for flag, used in (("--server", flags.server), ("--transport tf", flags.transport == "tf"),
                                       ("--UDP", flags.udp)) if used]
    if clashes:
      raise UsageError(f"--MPI's workers are the ranks of the MPI job, and their rows go through it: drop "
                       f"{', '.join(clashes)}")


def cluster_workers(flags: argparse.Namespace) -> list[str] | None:
  """The worker tasks of `--server`, in order; None for local mode (no --server, or the workers are the PS's job)."""
  if not flags.server:
    return None
  from strategies.cluster.spec import ClusterSpec  # pylint: disable=g-import-not-at-top
  spec = ClusterSpec.parse(flags.server)
  ps_tasks = spec.tasks(flags.ps_job_name, "parameter server job (--ps-job-name)")
  if len(ps_tasks) != 1:
    raise ValueError(f"the parameter server job {flags.ps_job_name!r} has {len(ps_tasks)} tasks; it must have "
                     "exactly one, this process")
  if flags.ev_job_name is not None:
    spec.tasks(flags.ev_job_name, "evaluator job (--ev-job-name)")
  if flags.wk_job_name == flags.ps_job_name:
    logging.info("The worker job is the parameter server's own (%s): the %d workers are simulated in this process",
                 flags.ps_job_name, flags.nb_workers)
    return None
  return [str(address) for address in spec.tasks(flags.wk_job_name, "worker job (--wk-job-name)")]


def cluster_jobs(flags: argparse.Namespace) -> dict[str, list[str]]:
  """`--server`'s jobs and their tasks."""
  from strategies.cluster.spec import ClusterSpec  # pylint: disable=g-import-not-at-top
  return {job: [str(a) for a in addresses] for job, addresses in ClusterSpec.parse(flags.server).jobs.items()}


def literal_pairs(pairs: Sequence[str]) -> dict[str, Any]:
  """`--redundancy-args` key:value pairs, values as Python literals where they parse (m:10 -> 10)."""
  import ast  # pylint: disable=g-import-not-at-top
  result = {}
  for pair in pairs:
    key, separator, value = pair.partition(":")
    if not separator or not key:
      raise ValueError(f"--redundancy-args: expected key:value, got {pair!r}")
    try:
      result[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      result[key] = value
  return result


def output_path(value: str | None, default: str | None = None) -> str | None:
  """An output flag's path: `-` means none, and an absent flag takes `default`."""
  if value == NONE:
    return None
  return value if value is not None else default


def typed_args(params: Mapping[str, Any], pairs: Sequence[str], what: str) -> dict[str, Any]:
  """`key:value` pairs typed by `params`' defaults (see `experiments.typed_pairs`)."""
  import experiments  # pylint: disable=g-import-not-at-top
  return experiments.typed_pairs(params, pairs, what)


def rule_params(rule) -> dict[str, Any]:
  """A rule's argument table, with a chain's stage arguments also under their plain names."""
  table = dict(rule.params)
  for stage in getattr(rule, "stages", ()):
    for key, value in stage.params.items():
      table.setdefault(key, value)
  return table


def optimizer_params(name: str) -> dict[str, Any]:
  """The keyword arguments of the Keras optimizer `name`, dashed, with their defaults."""
  import keras  # pylint: disable=g-import-not-at-top
  from strategies.training import OPTIMIZERS as CLASSES  # pylint: disable=g-import-not-at-top
  signature = inspect.signature(getattr(keras.optimizers, CLASSES[name]).__init__)
  return {key.replace("_", "-"): parameter.default for key, parameter in signature.parameters.items()
          if key not in ("self", "learning_rate", "name", "kwargs")
          and parameter.default is not inspect.Parameter.empty}


def redirect_outputs(stdout_to: str | None, stderr_to: str | None) -> None:
  """Points the process's standard output and error at files, overwritten if they exist."""
  for path, stream in ((output_path(stdout_to), sys.stdout), (output_path(stderr_to), sys.stderr)):
    if path:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      stream.flush()
      handle = open(path, "w", buffering=1, encoding="utf-8")
      os.dup2(handle.fileno(), stream.fileno())


def run(argv: Sequence[str] | None = None, keep_alive: list | None = None) -> int:
  """runner.py's command line, in process; `keep_alive` gets the run's `Training` (see `main`)."""
  parser = build_parser()
  flags = parser.parse_args(argv)
  try:
    check_flags(flags)
    if flags.mpi:
      from strategies.cluster import mpi  # pylint: disable=g-import-not-at-top
      rank = mpi.require_world(flags.nb_workers)
      if rank > 0:
        return serve_worker_rank(flags, rank)
    redirect_outputs(flags.stdout_to, flags.stderr_to)
    training = build_training(flags)
  except UsageError as error:
    parser.error(str(error))
  except (ValueError, FileNotFoundError) as error:
    # Bad arguments found while building the run (unknown rule, bad key:value, missing dataset...);
    # a missing IDX file or directory is a FileNotFoundError that names the path.
    print(f"runner.py: error: {error}", file=sys.stderr)
    return 2
  # From here on an exception is a failure of the run, not of the command line: the loop saves its
  # checkpoint and says where it is, then the traceback shows.
  if keep_alive is not None:
    keep_alive.append(training)
  return training.run()


def serve_worker_rank(flags: argparse.Namespace, rank: int) -> int:
  """runner.py --MPI on ranks 1 to n: worker rank-1, Byzantine (running --attack) if among the last
  --nb-real-byz-workers; its output goes to mpirun's, not to --stdout-to and --stderr-to (rank 0's)."""
  from strategies.cluster import mpi  # pylint: disable=g-import-not-at-top
  index = rank - 1
  byzantine = index >= flags.nb_workers - flags.nb_real_byz_workers and flags.attack
  attack_args = {}
  if byzantine:
    from aggregathor import attacks  # pylint: disable=g-import-not-at-top
    attack_args = typed_args(attacks.get(flags.attack).params, flags.attack_args, "--attack-args")
  return mpi.serve(flags.attack if byzantine else None, attack_args)


def main() -> None:
  """The command line as a process: it exits as soon as the run's outputs are written and closed.

  Tearing down the distributed input pipeline can take TensorFlow minutes on few cores (tf.data's
  destructor waits on its per-device threads; 17 s to 6 min measured with 51 workers on 2 cores),
  for nothing once the checkpoint, the evaluation file and the summaries are closed: the process
  ends without it.
  """
  alive: list = []
  status = run(keep_alive=alive)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def select_devices(flags: argparse.Namespace) -> bool:
  """AggregaThor's device flags: whether the workers go on GPUs. Accelerators are used if present."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if flags.use_tpu or flags.reuse_tpu:
    if tf.config.list_physical_devices("TPU"):
      raise ValueError("TPUs found, but ByzantineStrategy places its workers as MirroredStrategy does, which "
                       "cannot run replicas on TPU cores; drop --use-tpu/--reuse-tpu")
    logging.warning("--use-tpu/--reuse-tpu: TensorFlow sees no TPU; the workers run on the %s",
                    "GPUs" if flags.use_gpu or flags.reuse_gpu else "CPU")
  use_gpu = flags.use_gpu or flags.reuse_gpu
  if use_gpu and not tf.config.list_physical_devices("GPU"):
    logging.warning("--use-gpu/--reuse-gpu: TensorFlow sees no GPU; the workers run on the CPU")
    use_gpu = False
  return use_gpu


def party_compression_args(flags: argparse.Namespace) -> dict[str, Any]:
  """--party-compression-args, typed by the compressor's defaults."""
  if not flags.party_compression:
    if flags.party_compression_args:
      raise ValueError("--party-compression-args given without --party-compression")
    return {}
  from aggregathor import compression  # pylint: disable=g-import-not-at-top
  return typed_args(compression.params(flags.party_compression), flags.party_compression_args,
                    "--party-compression-args")


def compression_args(flags: argparse.Namespace) -> dict[str, Any]:
  """--compression-args, typed by the compressor's defaults."""
  if not flags.compression:
    if flags.compression_args:
      raise ValueError("--compression-args given without --compression")
    return {}
  from aggregathor import compression  # pylint: disable=g-import-not-at-top
  return typed_args(compression.params(flags.compression), flags.compression_args, "--compression-args")


def build_training(flags: argparse.Namespace):
  """Flags -> `strategies.training.TrainingConfig` -> a `Training`, ready to run."""
  logging.set_verbosity(logging.INFO)
  import strategies  # pylint: disable=g-import-not-at-top
  workers = cluster_workers(flags)
  use_gpu = select_devices(flags)
  if workers is None and not flags.mpi:  # on a cluster, the workers' devices are theirs
    replicas = flags.nb_workers
    if flags.redundancy:
      from aggregathor import redundancy  # pylint: disable=g-import-not-at-top
      replicas = redundancy.get(flags.redundancy, nb_workers=flags.nb_workers, replication=flags.replication,
                                **literal_pairs(flags.redundancy_args)).nb_files  # one replica per file
    strategies.configure_devices(replicas, use_gpu=use_gpu, reuse_gpu=use_gpu and flags.reuse_gpu)
  import experiments  # pylint: disable=g-import-not-at-top
  from aggregathor import attacks, gars  # pylint: disable=g-import-not-at-top
  from strategies import schedules, training  # pylint: disable=g-import-not-at-top

  rule = gars.get(flags.aggregator)
  attack_args = {}
  if flags.attack:
    attack_args = typed_args(attacks.get(flags.attack).params, flags.attack_args, "--attack-args")
  optimizer_args = {key.replace("-", "_"): value for key, value in
                    typed_args(optimizer_params(flags.optimizer), flags.optimizer_args, "--optimizer-args").items()}
  checkpoint_dir = output_path(flags.checkpoint_dir)
  config = training.TrainingConfig(
      experiment=flags.experiment,
      experiment_args=experiments.split_pairs(flags.experiment_args, "--experiment-args"),
      seed=flags.seed, aggregator=flags.aggregator,
      aggregator_args=typed_args(rule_params(rule), flags.aggregator_args, "--aggregator-args"),
      nb_workers=flags.nb_workers, nb_decl_byz_workers=flags.nb_decl_byz_workers,
      nb_real_byz_workers=flags.nb_real_byz_workers, attack=flags.attack, attack_args=attack_args,
      label_flip=flags.label_flip, optimizer=flags.optimizer, optimizer_args=optimizer_args,
      learning_rate=flags.learning_rate,
      learning_rate_args=typed_args(schedules.params(flags.learning_rate), flags.learning_rate_args,
                                    "--learning-rate-args"),
      l1_regularize=flags.l1_regularize, l2_regularize=flags.l2_regularize, momentum=flags.momentum,
      momentum_at=flags.momentum_at, dampening=flags.dampening, nesterov=flags.nesterov,
      gradient_clip=flags.gradient_clip,
      local_steps=flags.local_steps, local_epochs=flags.local_epochs, max_steps=flags.max_steps,
      checkpoint_dir=checkpoint_dir, checkpoint_delta=flags.checkpoint_delta,
      checkpoint_period=flags.checkpoint_period,
      summary_dir=output_path(flags.summary_dir, checkpoint_dir), summary_delta=flags.summary_delta,
      summary_period=flags.summary_period,
      evaluation_file=output_path(flags.evaluation_file, checkpoint_dir and os.path.join(checkpoint_dir, "eval")),
      evaluation_delta=flags.evaluation_delta, evaluation_period=flags.evaluation_period,
      study_period=flags.study_period,
      study_file=output_path(flags.study_file, os.path.join(checkpoint_dir, "study")
                             if checkpoint_dir and flags.study_period else None),
      log_period=flags.log_period,
      trace=flags.trace, no_wait=flags.no_wait, workers=workers, credentials=flags.credentials,
      step_timeout=flags.step_timeout, start_timeout=flags.start_timeout, transport="mpi" if flags.mpi else flags.transport,
      cluster=cluster_jobs(flags) if workers else None, ps_job=flags.ps_job_name, worker_job=flags.wk_job_name,
      redundancy=flags.redundancy, redundancy_args=literal_pairs(flags.redundancy_args),
      replication=flags.replication, byzantine_set=flags.byzantine_set, byzantine_workers=flags.byzantine_workers,
      buckets=flags.buckets, compression=flags.compression,
      compression_args=compression_args(flags), asynchronous=flags.asynchronous, delay_spread=flags.delay_spread,
      parties=flags.parties, global_aggregator=flags.global_aggregator,
      global_aggregator_args=typed_args(rule_params(gars.get(flags.global_aggregator)), flags.global_aggregator_args,
                                        "--global-aggregator-args"),
      nb_decl_byz_parties=flags.nb_decl_byz_parties, party_compression=flags.party_compression,
      party_compression_args=party_compression_args(flags), global_update=flags.global_update,
      dc_lambda=flags.dc_lambda, dc_weight_decay=flags.dc_weight_decay,
      udp_workers=flags.udp, udp_datagram_bytes=flags.udp_datagram_bytes, udp_fill=flags.udp_fill,
      udp_linger=flags.udp_linger)
  return training.Training(config)


if __name__ == "__main__":
  main()
