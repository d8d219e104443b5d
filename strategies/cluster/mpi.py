"""The MPI transport: the workers are the ranks of one `mpirun` job, their rows gathered by Horovod's collectives.

    mpirun -np 6 python runner.py --MPI --nb-workers 5 --nb-decl-byz-workers 1 --aggregator krum ...

Rank 0 is the trusted parameter server and runs the training loop; ranks 1 to
n are workers 0 to n-1 (with `--nb-real-byz-workers K --attack NAME`, the last
K of them are real Byzantine processes, attacking from their own gradients).
Each exchange is two collectives, both of bytes in `wire`'s format:
- out, from rank 0: a control broadcast (what comes, of which step, how many
  bytes), then the job (JSON, scattered by `alltoall`, a message per rank), the
  weights (`broadcast`), or each worker's batch (`alltoall`);
- back, to rank 0 alone: `alltoall` with every rank's whole answer addressed to
  rank 0, so that rank 0 gets each rank's bytes apart, with how many each sent,
  and nobody's row reaches another worker.
Rank 0 decodes each answer with `wire.decode_row`, exactly as over gRPC: a row
of the wrong size, count, magic or step is refused, counted, and the step goes
on without it if the rule allows (`quorum`). Nothing a rank sends is executed
or unpickled (Horovod's `*_object` collectives, which pickle, are never used),
and the workers apply nothing but rank 0's broadcast.

What MPI does not give, and the README's threat model says: no authentication
(a rank's identity is its rank, as the MPI runtime says), no bound on what a
rank makes rank 0 receive in one collective, and no liveness. A collective
waits for every rank, and MPI aborts the job when a rank dies; a rank that
stalls or sends a tensor Horovod cannot match (another dtype) stops it too.
Rank 0 never hangs: each collective runs under a deadline (the step timeout,
the start timeout for the job and the first step) and, past it, rank 0 saves
its checkpoint and ends with exit status 3, and `mpirun` ends the others. When
a rank dies, `mpirun` sends the others SIGTERM, then SIGKILL a second later
(`--mca odls_base_sigkill_timeout S` gives them S): rank 0, blocked in a
collective where Python runs no signal handler, saves its checkpoint from a
watcher thread and ends with exit status 143.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from absl import logging

from strategies.cluster import payloads, wire
from strategies.cluster.pool import StepRows
from strategies.cluster.spec import ClusterError

# The control broadcast: [what, step, bytes], int64.
JOB, WEIGHTS, BATCHES, STOP = 1, 2, 3, 4
KINDS = {JOB: "job", WEIGHTS: "weights", BATCHES: "batches", STOP: "stop"}
# The largest job message a worker rank takes (as over gRPC).
MAX_JOB_BYTES = 1 << 20


def _horovod():
  """`horovod.tensorflow`, initialised; a clear error where it is missing or built without MPI."""
  try:
    import horovod.tensorflow as hvd  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ClusterError(f"--MPI needs Horovod with MPI, which does not import here ({error}): install it with "
                       "`make mpi` (patches/horovod/install.sh; see the README's MPI section)") from error
  if not hvd.mpi_built():
    raise ClusterError("this Horovod was built without MPI: reinstall it with patches/horovod/install.sh")
  hvd.init()
  return hvd


def world() -> tuple[int, int]:
  """(this process's rank, the number of ranks) of the MPI job; (0, 1) outside `mpirun`."""
  hvd = _horovod()
  return hvd.rank(), hvd.size()


def require_world(nb_workers: int) -> int:
  """This process's rank, after checking that the job has the parameter server and `nb_workers` worker ranks."""
  rank, size = world()
  if size != nb_workers + 1:
    raise ClusterError(f"--MPI with --nb-workers {nb_workers} runs as {nb_workers + 1} MPI ranks (rank 0 the "
                       f"parameter server, one rank per worker), and this job has {size}: start it with "
                       f"`mpirun -np {nb_workers + 1} python runner.py --MPI ...` (or deploy.py --MPI)")
  return rank


class Collectives:
  """The transport's collectives on numpy arrays, each under a deadline on rank 0 (see the module's docstring)."""

  def __init__(self, on_lost: Callable[[int], Any] | None = None):
    """`on_lost(status)`: what rank 0 does when a collective cannot end (past its deadline: status 3; SIGTERM
    from mpirun: 143), before the process ends with that status; e.g. save the checkpoint."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self.hvd = _horovod()
    self.rank, self.size = self.hvd.rank(), self.hvd.size()
    self.on_lost = on_lost
    self.in_flight: str | None = None  # the collective rank 0 is blocked in, if any
    self.broken = False  # a collective failed: Horovod has shut down
    if self.rank == 0 and threading.current_thread() is threading.main_thread():
      self._watch_signals()

  def _watch_signals(self) -> None:
    """SIGTERM while rank 0 is blocked in a collective: save, then exit 143 (Python's own handlers cannot run)."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)  # written whichever thread the signal hits
    self._wakeup = (reader, writer)  # kept open for as long as this object lives

    def watch() -> None:
      while True:
        received = reader.recv(64)
        if not received:
          return
        if signal.SIGTERM in received and self.in_flight is not None:
          logging.error("SIGTERM (mpirun ends the job: did a rank die?) during %s: the parameter server saves its "
                        "checkpoint and stops (exit status 143); rerun to resume from it", self.in_flight)
          self._lost(143)

    threading.Thread(target=watch, name="mpi-signals", daemon=True).start()

  def _lost(self, status: int) -> None:
    if self.on_lost is not None:
      try:
        self.on_lost(status)
      except Exception as error:  # pylint: disable=broad-except
        logging.error("Saving the checkpoint failed: %s", error)
    logging.flush()
    os._exit(status)  # pylint: disable=protected-access

  def _run(self, what: str, timeout: float | None, collective: Callable[[], Any]) -> Any:
    """`collective()`, on rank 0 under a deadline; Horovod's failure (a mismatched tensor, a shut-down job) is a
    `ClusterError` that says so, and the transport is `broken` from then on."""
    from strategies.cluster import in_graph  # pylint: disable=g-import-not-at-top
    deadline = None
    if self.rank == 0 and timeout is not None:
      deadline = in_graph.Deadline(timeout, lambda: f"MPI: {what} did not complete on every rank",
                                   transport="the MPI transport", on_expire=lambda: self._lost(3))
    self.in_flight = what
    try:
      if deadline is None:
        return collective()
      with deadline:
        return collective()
    except self._tf.errors.OpError as error:
      self.broken = True
      detail = (error.message or str(error)).split("}}")[-1].strip().splitlines()[0][:300]
      raise ClusterError(f"MPI: {what} failed ({detail}): a rank sent a tensor Horovod cannot match (another dtype "
                         "or shape) or left the job, and a collective cannot leave a rank out, so the job stops "
                         "here (rerun to resume from the last checkpoint)") from error
    finally:
      self.in_flight = None

  def finalize(self) -> None:
    """Ends Horovod and MPI in this process (every rank does once the run is over), so that mpirun exits 0."""
    self.hvd.shutdown()

  def control(self, kind: int = 0, step: int = 0, size: int = 0, timeout: float | None = None) -> tuple[int, int, int]:
    """Rank 0's [kind, step, size], broadcast to every rank."""
    header = self._run(f"the {KINDS.get(kind, kind)} announcement", timeout, lambda: self.hvd.broadcast(
        self._tf.constant([kind, step, size], self._tf.int64), 0, name="aggregathor_control"))
    kind, step, size = (int(value) for value in header.numpy())
    return kind, step, size

  def broadcast(self, data: bytes | int, timeout: float | None = None) -> bytes:
    """Rank 0's `data` on every rank; the others give the size they expect."""
    payload = np.frombuffer(data, np.uint8) if self.rank == 0 else np.zeros(int(data), np.uint8)
    out = self._run("the weights broadcast", timeout, lambda: self.hvd.broadcast(
        self._tf.constant(payload), 0, name="aggregathor_broadcast"))
    return out.numpy().tobytes()

  def scatter(self, messages: Sequence[bytes] | None = None, timeout: float | None = None) -> bytes:
    """Rank 0 sends messages[r] to each rank r (its own, messages[0], is empty); each rank gets its own."""
    if self.rank == 0:
      payload = np.frombuffer(b"".join(messages), np.uint8)
      splits = [len(message) for message in messages]
    else:
      payload, splits = np.zeros(0, np.uint8), [0] * self.size
    received, _ = self._run("the scatter of the workers' messages", timeout, lambda: self.hvd.alltoall(
        self._tf.constant(payload), splits=self._tf.constant(splits, self._tf.int32), name="aggregathor_scatter"))
    return received.numpy().tobytes()

  def gather(self, answer: bytes = b"", timeout: float | None = None) -> list[bytes]:
    """Each rank's `answer`, to rank 0 alone: rank 0 gets the list of every rank's bytes, the others []."""
    splits = [0] * self.size
    if self.rank != 0:
      splits[0] = len(answer)
    else:
      answer = b""
    received, counts = self._run("the gather of the workers' answers", timeout, lambda: self.hvd.alltoall(
        self._tf.constant(np.frombuffer(answer, np.uint8)), splits=self._tf.constant(splits, self._tf.int32),
        name="aggregathor_gather"))
    if self.rank != 0:
      return []
    data, ends = received.numpy().tobytes(), np.cumsum(counts.numpy())
    return [data[end - count:end] for end, count in zip(ends, counts.numpy())]


class MpiPool:
  """Rank 0's side: the worker ranks, with the same interface as `pool.WorkerPool` (`configure`, `compute`)."""

  def __init__(self, nb_workers: int, step_timeout: float = 10.0, start_timeout: float = 120.0,
               on_lost: Callable[[int], Any] | None = None):
    if not step_timeout > 0 or not start_timeout > 0:
      raise ValueError(f"expected positive step and start timeouts, got {step_timeout} and {start_timeout}")
    self.collectives = Collectives(on_lost)
    if self.collectives.rank != 0:
      raise ClusterError(f"the parameter server is MPI rank 0, this is rank {self.collectives.rank}")
    if self.collectives.size != nb_workers + 1:
      raise ClusterError(f"{nb_workers} workers need {nb_workers + 1} MPI ranks, this job has "
                         f"{self.collectives.size}")
    self.nb_workers = nb_workers
    self.step_timeout, self.start_timeout = float(step_timeout), float(start_timeout)
    self.dimension: int | None = None
    self.row_dimension: int | None = None
    self.present = np.ones(nb_workers, bool)
    self.refused: dict = {}
    self.failures: dict = {}
    self.udp = None  # no UDP over MPI
    self.codec: Any = None
    self._job: dict[str, Any] | None = None
    self._stopped = False

  def describe(self, index: int) -> str:
    return f"worker {index} (MPI rank {index + 1})"

  def configure(self, job: Mapping[str, Any], largest_request: int | None = None, files_per_worker: int = 1,
                udp_config: Any = None, codec: Any = None) -> None:
    """Scatters the job to the worker ranks, which must all take it within the start timeout (the arguments as
    `pool.WorkerPool.configure`'s)."""
    del largest_request  # MPI messages have no size limit to raise
    if udp_config is not None:
      raise ClusterError("--UDP sends to a parameter server over the network; over --MPI every row goes through "
                         "the MPI job: drop --UDP")
    if codec is not None and files_per_worker != 1:
      raise ClusterError("compressed rows go without redundancy")
    self.codec = codec
    self._job = dict(job)
    self.dimension = int(job["dimension"])
    self.row_dimension = self.dimension * files_per_worker
    messages = [b""] + [json.dumps({**self._job, "worker": index, "udp": None}).encode() for index in range(self.nb_workers)]
    collectives = self.collectives
    collectives.control(JOB, 0, 0, self.start_timeout)
    collectives.scatter(messages, self.start_timeout)
    answers = collectives.gather(timeout=self.start_timeout)[1:]
    problems = []
    for index, answer in enumerate(answers):
      try:
        reply = json.loads(answer)
        if "error" in reply:
          problems.append(f"{self.describe(index)}: {str(reply['error'])[:1000]}")
        elif not (reply["worker"] == index and reply["dimension"] == self.dimension and reply["run"] == job["run"]):
          problems.append(f"{self.describe(index)} answered the job with {answer[:200]!r}, expected worker {index} "
                          f"with {self.dimension} parameters")
      except (ValueError, KeyError, TypeError):
        problems.append(f"{self.describe(index)} answered the job with {answer[:200]!r}, not its JSON reply")
    if problems:
      raise ClusterError("the worker ranks could not start the run:\n  " + "\n  ".join(problems))
    self.present[:] = True

  def compute(self, step: int, weights: np.ndarray, timeout: float | None = None,
              batches: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> StepRows:
    """The rows of step `step`; a refused row is absent (zeros, `present` False) and counted."""
    timeout = self.step_timeout if timeout is None else timeout
    collectives = self.collectives
    if batches is None:
      request = wire.encode_weights(step, weights)
      collectives.control(WEIGHTS, step, len(request), timeout)
      collectives.broadcast(request, timeout)
    else:
      requests = [wire.encode_batch(step, weights, x, y) for x, y in batches]
      collectives.control(BATCHES, step, 0, timeout)
      collectives.scatter([b""] + requests, timeout)
    answers = collectives.gather(timeout=timeout)[1:]
    n, d = self.nb_workers, self.row_dimension
    result = StepRows(np.zeros((n, d), np.float32), np.zeros(n, bool), np.full(n, np.nan), np.full(n, np.nan))
    for index, answer in enumerate(answers):
      try:
        row, loss, accuracy = payloads.decode_row(answer, step, d, self.codec)
      except wire.RefusedMessage as error:
        key = (index, error.reason)
        self.refused[key] = self.refused.get(key, 0) + 1
        logging.log_every_n_seconds(logging.WARNING, "Refused the row of %s for step %d: %s", 10,
                                    self.describe(index), step, error)
        continue
      result.rows[index] = row
      result.losses[index], result.accuracies[index] = loss, accuracy
      result.present[index] = True
    self.present = result.present.copy()
    return result

  def close(self) -> None:
    """Tells the worker ranks the run is over (they exit); the refused rows, if any, are logged."""
    if self.refused:
      logging.warning("Refused rows: %s", ", ".join(f"worker {i} {reason} x{count}"
                                                   for (i, reason), count in sorted(self.refused.items())))
    self.refused = {}
    if not self._stopped and not self.collectives.broken:
      self._stopped = True
      self.collectives.control(STOP, 0, 0, self.step_timeout)
      self.collectives.finalize()


class WorkerRank:
  """A worker rank's loop: takes rank 0's job, then answers each step, until rank 0 says stop."""

  def __init__(self, attack: str | None = None, attack_args: Mapping[str, Any] | None = None,
               responder: Any = None):
    """`responder`: builds the jobs and answers the steps (default: `worker.Responder`, honest or attacking)."""
    self.collectives = Collectives()
    self.index = self.collectives.rank - 1
    if self.index < 0:
      raise ClusterError("rank 0 is the parameter server, not a worker rank")
    if responder is None:
      from strategies.cluster import worker  # pylint: disable=g-import-not-at-top
      responder = worker.Responder(self.index, attack, attack_args)
    self.responder = responder
    self._size = 0  # the weights message's size, once a job is configured

  def serve(self) -> int:
    """Answers rank 0 until it stops the run; returns the exit status: 0, or 3 when the MPI job broke."""
    try:
      return self._serve()
    except ClusterError as error:
      logging.error("Worker %d (MPI rank %d): %s", self.index, self.collectives.rank, error)
      return 3

  def _serve(self) -> int:
    collectives = self.collectives
    while True:
      kind, step, size = collectives.control()
      if kind == STOP:
        logging.info("Worker %d (MPI rank %d): the parameter server ended the run", self.index, collectives.rank)
        collectives.finalize()
        return 0
      if kind == JOB:
        collectives.gather(self._configure(collectives.scatter()))
      elif kind == WEIGHTS:
        collectives.gather(self._answer(collectives.broadcast(size), step))
      elif kind == BATCHES:
        collectives.gather(self._answer(collectives.scatter(), step))
      else:
        raise ClusterError(f"MPI rank 0 announced {kind}, expected one of {sorted(KINDS)}: the ranks run "
                           "different versions of AggregaThor")

  def _configure(self, message: bytes) -> bytes:
    if len(message) > MAX_JOB_BYTES:
      return json.dumps({"error": f"a job of {len(message)} bytes, at most {MAX_JOB_BYTES} taken"}).encode()
    try:
      return self.responder.configure(message)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, FileNotFoundError) as error:
      logging.error("Worker %d: the job was refused: %s", self.index, error)
      return json.dumps({"error": f"worker {self.index}: {error}"}).encode()

  def _answer(self, request: bytes, step: int) -> bytes:
    # An empty answer keeps the ranks in step: rank 0 refuses it (size) and goes on without this row.
    try:
      return self.responder.answer(request)
    except wire.RefusedMessage as error:
      logging.error("Worker %d: step %d's request was refused: %s", self.index, step, error)
    except Exception as error:  # pylint: disable=broad-except
      logging.exception("Worker %d: step %d failed: %s", self.index, step, error)
    return b""


def serve(attack: str | None = None, attack_args: Mapping[str, Any] | None = None) -> int:
  """Runs this worker rank until rank 0 ends the run (runner.py --MPI on ranks 1 to n)."""
  logging.set_verbosity(logging.INFO)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return WorkerRank(attack, attack_args).serve()

