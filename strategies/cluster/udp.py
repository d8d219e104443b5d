"""Gradient rows over UDP, for the workers the parameter server names (`runner.py --UDP N`): lossy, authenticated.

The parameter server still sends each step's weights over the workers' mutual-TLS
channel, and a UDP worker still answers there, with its loss and accuracy and
no values. Its row travels as datagrams (see `datagrams`) to the parameter
server's UDP port: the port of its task in the cluster JSON. A datagram is
authenticated with a key the parameter server draws for each worker and run
and gives it over TLS; datagrams are not encrypted, so a worker sends over UDP
only if started with `deploy.py --UDP N` covering its index.

The parameter server reassembles each row until the step's deadline, or, once
the worker's answer is in, for `linger` seconds after the last thing it got from
that worker. A coordinate whose chunk did not come is filled by policy: "nan"
(the default, which coordinate-wise rules such as median absorb), "zero", or
"last" (the worker's last value received there, 0 before any). A worker none of
whose chunks came is absent for the step, as a late TCP worker is. Refused
datagrams (oversized, malformed, unknown worker, forged, stale, future) and
duplicates ("replayed") are dropped and counted, as are the chunks lost.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
import socket
from typing import Any, Mapping

import numpy as np
from absl import logging

from strategies.cluster import datagrams
from strategies.cluster.spec import Address, ClusterError, parse_address

FILLS = ("nan", "zero", "last")


@dataclasses.dataclass
class UdpConfig:
  """Which workers send over UDP (the first `nb_workers`), to which address, in datagrams of what size."""
  nb_workers: int
  address: Address
  datagram_bytes: int = datagrams.DEFAULT_DATAGRAM_BYTES
  fill: str = "nan"
  linger: float = 0.005

  def __post_init__(self):
    if self.fill not in FILLS:
      raise ValueError(f"--udp-fill {self.fill!r}: expected one of {', '.join(FILLS)}")
    if not self.linger >= 0:
      raise ValueError(f"--udp-linger must be >= 0 seconds, got {self.linger}")
    datagrams.values_per_chunk(self.datagram_bytes)  # raises with the range


def _buffer_size(sock: socket.socket, wanted: int) -> int:
  """Asks for a receive buffer of `wanted` bytes (past the system's cap where allowed); returns what it got."""
  try:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUFFORCE, wanted)  # needs CAP_NET_ADMIN
  except (OSError, AttributeError):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
  return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports twice the usable size


class UdpReceiver:
  """The parameter server's UDP socket and the reassembly of one step's rows."""

  def __init__(self, config: UdpConfig, dimension: int):
    self.config = config
    self.workers = list(range(config.nb_workers))
    self.dimension = dimension
    self.per_chunk = datagrams.values_per_chunk(config.datagram_bytes)
    self.nb_chunks = datagrams.nb_chunks(dimension, self.per_chunk)
    self.keys = {worker: os.urandom(datagrams.KEY_BYTES) for worker in self.workers}
    self._slot = {worker: slot for slot, worker in enumerate(self.workers)}
    family = socket.AF_INET6 if ":" in config.address.host else socket.AF_INET
    self.socket = socket.socket(family, socket.SOCK_DGRAM)
    try:
      self.socket.bind((config.address.host, config.address.port))
    except OSError as error:
      self.socket.close()
      raise ClusterError(f"--UDP: the parameter server cannot receive datagrams on {config.address} (its task in "
                         f"the cluster JSON): {error.strerror}; free that UDP port or fix the cluster JSON") from error
    self.socket.setblocking(False)
    step_bytes = len(self.workers) * self.nb_chunks * (config.datagram_bytes + 64)
    # Room for two steps, and for bursts of junk between two reads: at least 16 MB.
    got = _buffer_size(self.socket, max(2 * step_bytes, 16 << 20))
    if got < step_bytes:
      logging.warning("The UDP receive buffer holds %d bytes, less than one step's %d datagram bytes: under load "
                      "this host drops chunks itself. Raise net.core.rmem_max (sysctl) to at least %d",
                      got, step_bytes, 2 * step_bytes)
    self._buffer = bytearray(datagrams.MAX_DATAGRAM_BYTES + 1)
    k = len(self.workers)
    self.rows = np.zeros((k, dimension), np.float32)
    self._last = np.zeros((k, dimension), np.float32)
    self.received = np.zeros((k, self.nb_chunks), bool)
    self.last_arrival = np.full(k, -np.inf)
    self.step = -1
    self.dropped: collections.Counter = collections.Counter()  # reason -> datagrams
    self.lost: collections.Counter = collections.Counter()  # worker -> chunks lost, over the run
    self.delivery: dict[int, float] = {}  # worker -> fraction of its chunks that came, last step

  def job_field(self, worker: int) -> dict[str, Any] | None:
    """What worker `worker`'s job says of UDP: where to send, under which key, in datagrams of what size."""
    if worker not in self._slot:
      return None
    return {"address": str(self.config.address), "key": self.keys[worker].hex(),
            "datagram_bytes": self.config.datagram_bytes}

  def begin(self, step: int) -> None:
    """Starts reassembling the rows of step `step`; what is still in the socket from earlier steps is dropped."""
    self.step = step
    self.drain()  # earlier steps' stragglers: counted as stale
    fill = self.config.fill
    if fill == "last":
      self.rows[:] = self._last
    else:
      self.rows.fill(np.nan if fill == "nan" else 0.0)
    self.received[:] = False
    self.last_arrival[:] = -np.inf

  def drain(self, now: float | None = None) -> int:
    """Reads every datagram the socket holds; returns how many it read. `now` stamps their arrival."""
    count = 0
    view = memoryview(self._buffer)
    while True:
      try:
        size = self.socket.recv_into(self._buffer)
      except (BlockingIOError, InterruptedError):
        return count
      except OSError as error:  # e.g. ECONNREFUSED from an ICMP error: not a datagram
        if error.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
          continue
        raise
      count += 1
      self._take(view[:size], now)

  def _take(self, data: memoryview, now: float | None) -> None:
    try:
      chunk = datagrams.parse(data, self.keys, self.step, self.dimension, self.per_chunk,
                              self.config.datagram_bytes)
    except datagrams.RefusedDatagram as error:
      self.dropped[error.reason] += 1
      return
    slot, index = self._slot[chunk.worker], chunk.offset // self.per_chunk
    if self.received[slot, index]:
      self.dropped["replayed"] += 1
      return
    self.received[slot, index] = True
    self.rows[slot, chunk.offset:chunk.offset + chunk.values.size] = chunk.values
    if now is not None:
      self.last_arrival[slot] = now

  def complete(self, worker: int) -> bool:
    return bool(self.received[self._slot[worker]].all())

  def settled(self, worker: int, answered_at: float | None, now: float) -> bool:
    """Whether worker `worker`'s row is done: its answer in (the loss and accuracy), and all its chunks too or
    `linger` past the later of its answer and its last chunk."""
    if answered_at is None:
      return False
    if self.complete(worker):
      return True
    return now - max(answered_at, self.last_arrival[self._slot[worker]]) >= self.config.linger

  def next_settle(self, answered: Mapping[int, float]) -> float:
    """The earliest time at which a worker that answered may be settled by `linger`."""
    times = [max(at, self.last_arrival[self._slot[w]]) + self.config.linger for w, at in answered.items()
             if w in self._slot and not self.complete(w)]
    return min(times, default=np.inf)

  def finish(self, worker: int) -> tuple[np.ndarray | None, float]:
    """Worker `worker`'s row for the step (None if no chunk came) and the fraction of its chunks that came."""
    slot = self._slot[worker]
    got = int(self.received[slot].sum())
    self.delivery[worker] = got / self.nb_chunks
    self.lost[worker] += self.nb_chunks - got
    if self.config.fill == "last":
      self._last[slot] = self.rows[slot]
    return (self.rows[slot] if got else None), self.delivery[worker]

  def stats(self) -> dict[str, float]:
    """Per-worker delivery of the last step, and the run's lost chunks and dropped datagrams, by name."""
    values = {f"udp/delivery/worker-{w:02d}": self.delivery.get(w, float("nan")) for w in self.workers}
    values["udp/lost-chunks"] = float(sum(self.lost.values()))
    values["udp/dropped"] = float(sum(self.dropped.values()))
    return values

  def names(self) -> list[str]:
    return list(self.stats())

  def close(self) -> None:
    if self.dropped or self.lost:
      logging.info("UDP: %s chunk(s) lost (%s); datagrams dropped: %s", sum(self.lost.values()),
                   ", ".join(f"worker {w} x{c}" for w, c in sorted(self.lost.items()) if c) or "none",
                   ", ".join(f"{reason} x{c}" for reason, c in sorted(self.dropped.items())) or "none")
    self.socket.close()


class UdpSender:
  """A worker's side: its rows as datagrams to the parameter server, dropping `drop_rate` of them on purpose
  (a stand-in for a lossy network where `tc` cannot make one)."""

  def __init__(self, settings: Mapping[str, Any], worker: int, drop_rate: float = 0.0, seed: int = 0):
    if sorted(settings) != ["address", "datagram_bytes", "key"]:
      raise ValueError(f"job field udp: expected address, datagram_bytes and key, got {sorted(settings)}")
    self.address = parse_address(settings["address"], "job field udp.address")
    self.key = bytes.fromhex(settings["key"])
    if len(self.key) != datagrams.KEY_BYTES:
      raise ValueError(f"job field udp.key: expected {datagrams.KEY_BYTES} bytes, got {len(self.key)}")
    self.per_chunk = datagrams.values_per_chunk(int(settings["datagram_bytes"]))
    if not 0.0 <= drop_rate < 1.0:
      raise ValueError(f"--udp-drop-rate must be in [0, 1), got {drop_rate}")
    self.worker = worker
    self.drop_rate = drop_rate
    self._random = np.random.default_rng([seed, worker])
    family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
    self.socket = socket.socket(family, socket.SOCK_DGRAM)
    self.socket.connect((self.address.host, self.address.port))
    self.sent = 0

  def send(self, step: int, row: np.ndarray) -> int:
    """Sends the datagrams of `row` for step `step`; returns how many left (the dropped ones did not)."""
    packets = datagrams.encode(self.worker, step, row, self.key, self.per_chunk)
    if self.drop_rate:
      kept = self._random.random(len(packets)) >= self.drop_rate
      packets = [packet for packet, keep in zip(packets, kept) if keep]
    sent = 0
    for packet in packets:
      try:
        self.socket.send(packet)
        sent += 1
      except OSError:  # no buffer space, or an ICMP error from an earlier datagram: this one is lost
        continue
    self.sent += sent
    return sent

  def close(self) -> None:
    self.socket.close()
