"""The parameter server's side: it calls every worker each step, with a deadline, and checks what comes back.

The parameter server opens no port: it dials each worker over mutual TLS,
expecting that worker's own certificate (see `credentials`). Each step it sends
the weights to all n workers at once and waits:
- for every worker that answered the previous step, up to `step_timeout`;
- an absent worker (one that missed a deadline, failed, or lost its job) is
  asked too, and counts if its row comes in by then, but is not waited for:
  a stalled worker costs one deadline, not one per step.
A row is refused and counted unless it has exactly the expected size, dtype and
step; identity is the TLS channel it came on. A worker that lost its job (a
restart) is configured again, in the background, and rejoins with the current
weights, which every step carries.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import queue
import select
import socket
import time
from typing import Any, Mapping, Sequence

import grpc
import numpy as np
from absl import logging

from strategies.cluster import credentials, payloads, udp, wire, worker
from strategies.cluster.spec import Address, ClusterError


@dataclasses.dataclass
class StepRows:
  """What one step gathered: the rows (absent ones are zeros), who is present, and their loss and accuracy."""
  rows: np.ndarray
  present: np.ndarray
  losses: np.ndarray
  accuracies: np.ndarray

  @property
  def missing(self) -> list[int]:
    return [i for i, here in enumerate(self.present) if not here]


class WorkerPool:
  """Channels to the n workers, for `configure` once per run and `compute` once per step."""

  def __init__(self, addresses: Sequence[Address], credentials_dir: str, step_timeout: float = 10.0,
               start_timeout: float = 120.0):
    if not step_timeout > 0 or not start_timeout > 0:
      raise ValueError(f"expected positive step and start timeouts, got {step_timeout} and {start_timeout}")
    self.addresses = list(addresses)
    self.step_timeout = float(step_timeout)
    self.start_timeout = float(start_timeout)
    self._channel_credentials = credentials.channel_credentials(credentials_dir)
    self._channels: list[grpc.Channel] = []
    self._configure: list[Any] = []
    self._compute: list[Any] = []
    self.nb_workers = len(self.addresses)
    self.dimension: int | None = None
    self.row_dimension: int | None = None  # the dimension times the files a worker computes (redundancy)
    self._job: dict[str, Any] | None = None
    self.present = np.ones(self.nb_workers, bool)
    self._reconfiguring: dict[int, grpc.Future] = {}
    self.refused: collections.Counter = collections.Counter()  # (worker, reason) -> count
    self.failures: collections.Counter = collections.Counter()  # (worker, gRPC status) -> count
    self.udp: udp.UdpReceiver | None = None
    self.codec: Any = None
    self._wake_read = self._wake_write = None
    self._answers: queue.Queue | None = None  # asynchronous mode's ended calls
    self._first_shard: int | None = None

  def describe(self, index: int) -> str:
    return f"worker {index} at {self.addresses[index]}"

  def configure(self, job: Mapping[str, Any], largest_request: int | None = None, files_per_worker: int = 1,
                udp_config: udp.UdpConfig | None = None, codec: Any = None, first_shard: int | None = None) -> None:
    """Sends each worker its job (all at once); every worker must accept it within the start timeout.

    `largest_request`: the size of the largest step message (default: a weights message).
    `files_per_worker`: with a redundancy defence, each worker's row is that many gradients end to end.
    `udp_config`: the first `udp_config.nb_workers` workers send their rows over UDP (see `udp`).
    `codec`: the workers send a compressor's payloads, which it decodes (a `payloads.PayloadCodec`).
    `first_shard`: worker i reads data share first_shard + i of the job's nb_workers (a HiPS party's workers).
    """
    if codec is not None and (udp_config is not None or files_per_worker != 1):
      raise ClusterError("compressed rows go over the default transport, without UDP nor redundancy")
    self.codec = codec
    self._first_shard = first_shard
    self._job = dict(job)
    self.dimension = int(job["dimension"])
    self.row_dimension = self.dimension * files_per_worker
    self._connect(wire.row_size(self.row_dimension), largest_request or wire.weights_size(self.dimension))
    if udp_config is not None and udp_config.nb_workers:
      if udp_config.nb_workers > self.nb_workers:
        raise ClusterError(f"--UDP {udp_config.nb_workers}: there are only {self.nb_workers} workers")
      self.udp = udp.UdpReceiver(udp_config, self.row_dimension)
    calls = [self._configure[i].future(self._job_for(i), timeout=self.start_timeout) for i in range(self.nb_workers)]
    problems = []
    for index, call in enumerate(calls):
      try:
        self._check_configured(index, call.result())
      except grpc.RpcError as error:
        problems.append(f"{self.describe(index)}: {_explain(error, self.start_timeout)}")
      except ClusterError as error:
        problems.append(str(error))
    if problems:
      raise ClusterError("the workers could not start the run:\n  " + "\n  ".join(problems) +
                         "\nStart each worker with `deploy.py --cluster JSON --id JOB:INDEX` (or fix what it says)")
    self.present[:] = True

  def _connect(self, largest_answer: int, largest_request: int) -> None:
    """One channel per worker, which takes no answer larger than a row (gRPC refuses a longer one unread)."""
    self.close()
    self._channels, self._configure, self._compute = [], [], []
    # Woken by the gRPC threads when a call ends, so that one `select` waits for the calls and the datagrams.
    self._wake_read, self._wake_write = socket.socketpair()
    self._wake_read.setblocking(False)
    self._wake_write.setblocking(False)
    for index, address in enumerate(self.addresses):
      channel = grpc.secure_channel(str(address), self._channel_credentials, options=[
          # TLS checks that the far end holds worker `index`'s certificate, whatever the address.
          ("grpc.ssl_target_name_override", credentials.dns_name(credentials.worker_identity(index))),
          ("grpc.max_receive_message_length", max(largest_answer, worker.MAX_JOB_BYTES)),
          ("grpc.max_send_message_length", max(largest_request, worker.MAX_JOB_BYTES)),
          ("grpc.enable_retries", 0),
      ])
      self._channels.append(channel)
      self._configure.append(channel.unary_unary(worker.CONFIGURE))
      self._compute.append(channel.unary_unary(worker.COMPUTE))

  def _job_for(self, index: int) -> bytes:
    shard = {} if self._first_shard is None else {"shard": self._first_shard + index}
    return json.dumps({**self._job, "worker": index, **shard,
                       "udp": self.udp.job_field(index) if self.udp is not None else None}).encode()

  def rejoining(self, index: int) -> bool:
    """Whether worker `index` lost its job and is being configured again (asynchronous mode waits for it)."""
    self._collect_reconfigured()
    return index in self._reconfiguring

  def _sends_udp(self, index: int) -> bool:
    return self.udp is not None and index < len(self.udp.workers)

  def _check_configured(self, index: int, answer: bytes) -> None:
    try:
      reply = json.loads(answer)
      ok = (reply["worker"] == index and reply["dimension"] == self.dimension and reply["run"] == self._job["run"]
            and reply.get("udp", False) == self._sends_udp(index))
    except (ValueError, KeyError, TypeError, AttributeError):
      ok = False
    if not ok:
      raise ClusterError(f"{self.describe(index)} answered the job with {answer[:200]!r}, expected worker {index} "
                         f"with {self.dimension} parameters")

  def compute(self, step: int, weights: np.ndarray, timeout: float | None = None,
              batches: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> StepRows:
    """Gathers the rows of step `step` for `weights`; absent workers' rows are zeros, and `present` says which.

    With `batches`, worker i computes on batches[i] (x, y), sent with the weights; else on its own data.
    """
    self._collect_reconfigured()
    timeout = self.step_timeout if timeout is None else timeout
    if batches is None:
      request = wire.encode_weights(step, weights)
      requests = [request] * self.nb_workers
    else:
      requests = [wire.encode_batch(step, weights, x, y) for x, y in batches]
    started = time.monotonic()
    deadline = started + timeout + 0.5  # gRPC ends each call at `timeout`; the half second is its slack
    answered_at: dict[int, float] = {}
    wake = self._wake_write

    def ended(index: int):
      def callback(_):
        answered_at[index] = time.monotonic()
        try:
          wake.send(b"\0")
        except OSError:  # the wake-up socket is full: the loop is awake anyway
          pass
      return callback

    if self.udp is not None:
      self.udp.begin(step)
    calls = {i: self._compute[i].future(requests[i], timeout=timeout) for i in range(self.nb_workers)
             if i not in self._reconfiguring}
    for index, call in calls.items():
      call.add_done_callback(ended(index))
    n, d = self.nb_workers, self.row_dimension
    result = StepRows(np.zeros((n, d), np.float32), np.zeros(n, bool), np.full(n, np.nan), np.full(n, np.nan))
    # Wait for the present workers; the absent ones count only if they are in by then.
    waiting = [i for i in calls if self.present[i]]
    sources = [self._wake_read] + ([self.udp.socket] if self.udp is not None else [])
    while True:
      now = time.monotonic()
      if self.udp is not None:
        self.udp.drain(now)
      waiting = [i for i in waiting if not self._settled(i, answered_at.get(i), now)]
      if not waiting or now >= deadline:
        break
      until = deadline if self.udp is None else min(deadline, self.udp.next_settle(answered_at))
      select.select(sources, [], [], max(0.0, until - now))
      try:
        while self._wake_read.recv(4096):
          pass
      except BlockingIOError:
        pass
    for index, call in calls.items():
      taken = self._take(index, call, step)
      if taken is not None:
        result.rows[index], result.losses[index], result.accuracies[index] = taken
        result.present[index] = True
    self.present = result.present.copy()
    return result

  # Asynchronous mode (AdaComp's server): each worker computes on its own weights, and is taken as it answers.

  def submit(self, index: int, step: int, weights: np.ndarray, timeout: float | None = None) -> None:
    """Asks worker `index` for its row of batch `step` on `weights`, without waiting (see `next_answer`)."""
    if self.udp is not None:
      raise ClusterError("the asynchronous server takes no UDP workers")
    if self._answers is None:
      self._answers = queue.Queue()
    call = self._compute[index].future(wire.encode_weights(step, weights),
                                       timeout=self.step_timeout if timeout is None else timeout)
    answers = self._answers
    call.add_done_callback(lambda _: answers.put((index, step, call)))

  def next_answer(self, timeout: float) -> tuple[int, tuple[np.ndarray, float, float] | None]:
    """(the worker that answered first, its (row, loss, accuracy), or None if it failed or its row was refused).

    Every submitted call ends by its own deadline, so `timeout` (longer than theirs) is only a backstop."""
    self._collect_reconfigured()
    try:
      index, step, call = self._answers.get(timeout=timeout)
    except queue.Empty as empty:
      raise ClusterError(f"no worker answered within {timeout:g} s") from empty
    return index, self._take(index, call, step)

  def _settled(self, index: int, answered_at: float | None, now: float) -> bool:
    """Whether worker `index` is done for the step: its call ended and, over UDP, its row is in or given up."""
    if not self._sends_udp(index):
      return answered_at is not None
    return self.udp.settled(index, answered_at, now)

  def _take(self, index: int, call: grpc.Future, step: int) -> tuple[np.ndarray, float, float] | None:
    """Worker `index`'s (row, loss, accuracy) for `step`, from its ended call; None if none (counted)."""
    over_udp = self._sends_udp(index)
    udp_row = self.udp.finish(index)[0] if over_udp else None  # its chunks are counted whatever its call did
    if not call.done():
      call.cancel()
      self.failures[(index, "deadline")] += 1
      return None
    try:
      answer = call.result()
    except grpc.RpcError as error:
      code = error.code()
      self.failures[(index, code.name)] += 1
      if code == grpc.StatusCode.FAILED_PRECONDITION and self._job is not None:
        # The worker lost its job (it restarted): configure it again, and it rejoins with the weights of a later step.
        logging.warning("%s has no job (restarted?): configuring it again", self.describe(index))
        self._reconfiguring[index] = self._configure[index].future(self._job_for(index), timeout=self.start_timeout)
      elif self.present[index]:
        logging.warning("%s failed step %d: %s", self.describe(index), step, _explain(error, self.step_timeout))
      return None
    except grpc.FutureCancelledError:
      self.failures[(index, "deadline")] += 1
      return None
    try:
      # A UDP worker answers with its loss and accuracy alone: its values came as datagrams.
      row, loss, accuracy = payloads.decode_row(answer, step, 0 if over_udp else self.row_dimension, self.codec)
    except wire.RefusedMessage as error:
      self.refused[(index, error.reason)] += 1
      logging.warning("Refused the row of %s for step %d: %s", self.describe(index), step, error)
      return None
    if over_udp:
      row = udp_row
      if row is None:
        self.failures[(index, "udp-lost")] += 1
        return None
    return row, loss, accuracy

  def _collect_reconfigured(self) -> None:
    for index, call in list(self._reconfiguring.items()):
      if not call.done():
        continue
      del self._reconfiguring[index]
      try:
        self._check_configured(index, call.result())
        logging.info("%s rejoined the run", self.describe(index))
      except (grpc.RpcError, ClusterError) as error:
        logging.warning("%s could not take the job again: %s", self.describe(index), error)

  def close(self) -> None:
    """Closes the channels; the refused rows and failed calls of the run, if any, are logged."""
    if self.refused:
      logging.warning("Refused rows: %s", ", ".join(f"worker {i} {reason} x{count}"
                                                   for (i, reason), count in sorted(self.refused.items())))
    if self.failures:
      logging.info("Failed or late calls: %s", ", ".join(f"worker {i} {code} x{count}"
                                                        for (i, code), count in sorted(self.failures.items())))
    self.refused.clear()
    self.failures.clear()
    for call in self._reconfiguring.values():
      call.cancel()
    self._reconfiguring.clear()
    for channel in self._channels:
      channel.close()
    self._answers = None  # the closed channels' cancelled calls
    if self.udp is not None:
      self.udp.close()
      self.udp = None
    if self._wake_read is not None:
      self._wake_read.close()
      self._wake_write.close()
      self._wake_read = self._wake_write = None


def _explain(error: grpc.RpcError, timeout: float) -> str:
  code = error.code()
  if code == grpc.StatusCode.DEADLINE_EXCEEDED:
    return f"no answer within {timeout:g} s"
  if code == grpc.StatusCode.UNAVAILABLE:
    return f"unreachable ({(error.details() or '').splitlines()[0][:200]})"
  return f"{code.name}: {(error.details() or '')[:500]}"
