"""The in-graph transport, for trusted networks only: TensorFlow's own runtime, as the original AggregaThor had it.

Each worker task runs a TensorFlow server (`deploy.py --cluster JSON --id
workers:I --transport tf`). The parameter server (`runner.py --server JSON
--transport tf`) connects to the cluster and runs a `ByzantineStrategy`-like
strategy whose replicas are the workers' devices: each step's graph runs there,
and the gradients come back to the robust reduction on the parameter server's
CPU. Byzantine workers are simulated by the parameter server (`--attack`), as in
the original.

What it exposes, plainly: a TensorFlow server executes any graph that anyone who
reaches its port sends it (reading and writing files, starting processes,
reading and assigning variables), with no authentication and no encryption
(TensorFlow's SECURITY.md). Every task of this transport runs one, the parameter
server's included, bound to all interfaces (TensorFlow's server has no bind
address). So a worker, or anyone on the network, can take over the parameter
server. Use it where every host and the network are trusted; otherwise use the
default transport (`strategies.cluster.pool`), which exposes nothing.

Faults: TensorFlow's remote calls carry no deadline. A killed worker fails the
step within about a second; a stalled one would block it forever. Both end the
run with exit status 3 and a message (the step deadline is enforced by a
watchdog, which ends the process): there is no quorum in-graph, since one step
is one graph over every worker. Rerun to resume from the last checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
from absl import logging

from aggregathor import attacks, gars
from strategies import tf_internals
from strategies.byzantine import PipelineStrategyMixin
from strategies.cluster.spec import Address, ClusterError, ClusterSpec
from strategies.pipeline import GradientPipeline
from strategies.reduction import RobustReduction

EXPOSURE = ("the in-graph transport (--transport tf) runs TensorFlow servers, which execute any graph anyone who "
            "reaches their port sends, with no authentication: use it on trusted networks only")


def task_device(job: str, index: int, kind: str = "CPU") -> str:
  return f"/job:{job}/replica:0/task:{index}/device:{kind}:0"


def wait_until_reachable(addresses: Sequence[Address], timeout: float, what: str = "worker") -> None:
  """Waits until a TCP connection to every address succeeds, or raises naming those that never answered.

  TensorFlow waits for an unreachable task without a deadline: this check comes first.
  """
  deadline = time.monotonic() + timeout
  pending = list(enumerate(addresses))
  while pending:
    still = []
    for index, address in pending:
      try:
        with socket.create_connection((address.host, address.port), timeout=1.0):
          pass
      except OSError:
        still.append((index, address))
    pending = still
    if pending and time.monotonic() >= deadline:
      names = ", ".join(f"{what} {index} at {address}" for index, address in pending)
      raise ClusterError(f"no TensorFlow server answered at {names} within {timeout:g} s: start each with "
                         "`deploy.py --cluster JSON --id JOB:INDEX --transport tf`")
    if pending:
      time.sleep(0.2)


def connect(spec: ClusterSpec, ps_job: str, worker_job: str, timeout: float) -> list[str]:
  """Joins the cluster as the parameter server; returns the workers' devices (each task's first GPU, else CPU)."""
  workers = spec.tasks(worker_job, "worker job (--wk-job-name)")
  wait_until_reachable(workers, timeout)
  logging.warning("Using %s", EXPOSURE)
  tf.config.experimental_connect_to_cluster(
      tf.train.ClusterSpec({job: [str(a) for a in addresses] for job, addresses in spec.jobs.items()}),
      job_name=ps_job, task_index=0)
  with Deadline(timeout, lambda: f"the worker tasks of job {worker_job!r} did not list their devices"):
    names = {device.name for device in tf.config.list_logical_devices()}
  return [task_device(worker_job, i, "GPU") if task_device(worker_job, i, "GPU") in names
          else task_device(worker_job, i) for i in range(len(workers))]


class InGraphStrategy(PipelineStrategyMixin, tf.distribute.experimental.CentralStorageStrategy):
  """`ByzantineStrategy` over remote workers' devices: the variables on the parameter server, the rule there too.

  MirroredStrategy refuses remote devices in eager mode; CentralStorageStrategy
  places the variables on one device and runs a replica per compute device,
  and its reduction becomes the robust one. Same arguments as
  `ByzantineStrategy`, with the workers' `devices` (see `connect`) required.
  """

  def __init__(self, aggregator: str | gars.Rule, nb_workers: int, nb_decl_byz_workers: int = 0,
               nb_real_byz_workers: int = 0, attack: str | attacks.Attack | None = None,
               aggregator_args: Mapping[str, Any] | None = None, attack_args: Mapping[str, Any] | None = None, *,
               devices: Sequence[str], ps_device: str, momentum: float = 0.0, momentum_at: str = "update",
               dampening: float = 0.0, clip: float | None = None, study_period: int = 0):
    if len(devices) != nb_workers:
      raise ValueError(f"expected {nb_workers} worker devices, got {list(devices)}")
    self.pipeline = GradientPipeline(aggregator, nb_workers, nb_decl_byz_workers, nb_real_byz_workers, attack,
                                     aggregator_args, attack_args, momentum=momentum, momentum_at=momentum_at,
                                     dampening=dampening, clip=clip, study_period=study_period)
    super().__init__(compute_devices=list(devices), parameter_device=ps_device)
    tf_internals.set_cross_device_ops(self, RobustReduction(self.pipeline, ps_device))


class Deadline:
  """Ends the process with exit status 3 and `reason()` if its block takes longer than `timeout` seconds.

  For TensorFlow's remote calls, which have no deadline and cannot be
  cancelled: a blocked step cannot be given up, only the process can.
  """

  def __init__(self, timeout: float, reason: Callable[[], str], on_expire: Callable[[], Any] | None = None,
               transport: str = "the in-graph transport"):
    self.timeout = timeout
    self.reason = reason
    self.transport = transport
    self.on_expire = on_expire  # e.g. save_then_exit
    self._timer: threading.Timer | None = None

  def __enter__(self) -> "Deadline":
    self._timer = threading.Timer(self.timeout, self._expire)
    self._timer.daemon = True
    self._timer.start()
    return self

  def __exit__(self, *_) -> None:
    self._timer.cancel()

  def _expire(self) -> None:
    logging.error("%s within %g s, and %s cannot go on without a worker nor cancel the step: the parameter "
                  "server stops here (exit status 3). Restart the stalled worker, then rerun to resume from the "
                  "last checkpoint.", self.reason(), self.timeout, self.transport)
    if self.on_expire is not None:
      try:
        self.on_expire()
      except Exception as error:  # pylint: disable=broad-except
        logging.error("Saving the checkpoint failed too: %s", error)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)  # pylint: disable=protected-access


def save_then_exit(manager: tf.train.CheckpointManager | None, step: int, grace: float = 60.0,
                   status: int = 3) -> None:
  """Saves the checkpoint of `step`, then ends the process with exit status `status`, after a lost worker.

  Once a worker is lost, TensorFlow's eager context waits for it in every sync
  (`context.async_wait`, which a checkpoint's save ends with), forever: the
  checkpoint is complete on disk before that wait, so a watcher ends the
  process as soon as the checkpoint state names it.
  """
  def watch() -> None:
    deadline = time.monotonic() + grace
    while manager is not None and time.monotonic() < deadline:
      state = tf.train.get_checkpoint_state(manager.directory)
      if state is not None and state.model_checkpoint_path.endswith(f"-{step}"):
        logging.warning("Checkpoint saved to %s", state.model_checkpoint_path)
        break
      time.sleep(0.1)
    else:
      if manager is not None:
        logging.error("The checkpoint of step %d was not written within %g s", step, grace)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access

  watcher = threading.Thread(target=watch, daemon=True)
  watcher.start()
  latest = manager.latest_checkpoint if manager is not None else None
  if manager is not None and not (latest or "").endswith(f"-{step}"):
    manager.save(checkpoint_number=step)
  watcher.join()


def serve(spec: ClusterSpec, job: str, index: int) -> None:
  """Runs task `job:index`'s TensorFlow server in the foreground until SIGTERM or SIGINT."""
  address = spec.jobs[job][index]
  try:
    with socket.socket(socket.AF_INET6 if ":" in address.host else socket.AF_INET) as probe:
      probe.bind(("", address.port))
  except OSError as error:
    raise ClusterError(f"task {job}:{index} cannot listen on port {address.port}: {error.strerror}; free the port or "
                       "fix the cluster JSON") from error
  logging.warning("Task %s:%d: %s", job, index, EXPOSURE)
  server = tf.distribute.Server(
      tf.train.ClusterSpec({name: [str(a) for a in addresses] for name, addresses in spec.jobs.items()}),
      job_name=job, task_index=index, protocol="grpc", start=True)
  del server  # serves until the process ends
  stopped = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stopped.set())
  print(f"task {job}:{index} serving on {address}: TensorFlow's runtime, for trusted networks only", flush=True)
  stopped.wait()
  print(f"task {job}:{index} stopped", flush=True)
