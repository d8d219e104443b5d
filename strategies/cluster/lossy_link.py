"""A lossy, rate-limited loopback in a network namespace of its own, for trying the UDP transport on one machine.

    with LossyLoopback(loss=0.02, rate_mbit=200) as link:
      subprocess.run(link.command(["python", "runner.py", ...]))   # runs inside the namespace

The namespace has only its loopback, 127.0.0.1; every process of the cluster
runs in it (`command` wraps a command line in `ip netns exec`). Loss is real, in
the kernel: `tc netem loss` where the kernel has netem; otherwise a classifier
on the loopback's egress, an eBPF program of nine instructions that drops each
matching packet with probability `loss` (`bpf_get_prandom_u32`). A rate limit is
`netem rate`, or a token bucket (`tbf`) without netem. Needs root (CAP_NET_ADMIN
and CAP_SYS_ADMIN) and iproute2; `available()` says whether this machine can.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
from typing import Sequence

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD, _BPF_OBJ_PIN = 5, 6
_SCHED_CLS = 3
_IPPROTO_UDP = 17
_IP_PROTOCOL_OFFSET = 14 + 9  # the loopback's Ethernet header, then the IPv4 protocol byte


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
  return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def _drop_program(loss: float, udp_only: bool) -> bytes:
  """eBPF for a direct-action tc classifier: TC_ACT_SHOT with probability `loss` (UDP only, or every packet)."""
  threshold = int(loss * 2**32)
  if not 0 <= threshold < 2**31:
    raise ValueError(f"loss {loss}: expected 0 <= loss < 0.5")
  check_udp = [
      _insn(0xbf, 6, 1),  # r6 = skb (the implicit context of the packet load below)
      _insn(0x30, imm=_IP_PROTOCOL_OFFSET),  # r0 = packet byte (the IP protocol)
      _insn(0x55, 0, off=4, imm=_IPPROTO_UDP),  # not UDP: pass
  ] if udp_only else []
  return b"".join(check_udp + [
      _insn(0x85, imm=7),  # r0 = bpf_get_prandom_u32()
      _insn(0x35, 0, off=2, imm=threshold),  # r0 >= threshold: pass
      _insn(0xb7, 0, imm=2), _insn(0x95),  # return TC_ACT_SHOT
      _insn(0xb7, 0, imm=0), _insn(0x95),  # return TC_ACT_OK
  ])


def _load_pinned(program: bytes, path: str) -> None:
  """Loads `program` as a SCHED_CLS program and pins it at `path` (on a bpf file system)."""
  libc = ctypes.CDLL(None, use_errno=True)
  number = _BPF_SYSCALL.get(os.uname().machine)
  if number is None:
    raise OSError(f"no bpf syscall number known for {os.uname().machine}")
  code, license_text = ctypes.create_string_buffer(program), ctypes.create_string_buffer(b"GPL")
  log = ctypes.create_string_buffer(1 << 16)
  attr = struct.pack("<IIQQIIQI", _SCHED_CLS, len(program) // 8, ctypes.addressof(code),
                     ctypes.addressof(license_text), 1, len(log), ctypes.addressof(log), 0)
  attr = ctypes.create_string_buffer(attr.ljust(128, b"\0"))
  fd = libc.syscall(number, _BPF_PROG_LOAD, attr, 128)
  if fd < 0:
    raise OSError(ctypes.get_errno(), f"loading the drop program: {os.strerror(ctypes.get_errno())}: "
                  f"{log.value.decode(errors='replace')[:500]}")
  try:
    name = ctypes.create_string_buffer(path.encode())
    pin = ctypes.create_string_buffer(struct.pack("<QII", ctypes.addressof(name), fd, 0).ljust(128, b"\0"))
    if libc.syscall(number, _BPF_OBJ_PIN, pin, 128) != 0:
      raise OSError(ctypes.get_errno(), f"pinning the drop program: {os.strerror(ctypes.get_errno())}")
  finally:
    os.close(fd)


def _run(command: Sequence[str]) -> subprocess.CompletedProcess:
  return subprocess.run(list(command), capture_output=True, text=True, check=False)


def available() -> str | None:
  """None if this machine can make a lossy namespace; else why not."""
  if os.geteuid() != 0:
    return "needs root (network namespaces and tc)"
  if shutil.which("ip") is None or shutil.which("tc") is None:
    return "needs iproute2 (ip and tc)"
  try:
    with LossyLoopback(loss=0.01):
      pass
  except (OSError, RuntimeError) as error:
    return str(error)
  return None


class LossyLoopback:
  """A network namespace whose loopback drops `loss` of the packets (UDP only if `udp_only`), at most
  `rate_mbit` megabits a second if given; removed on `close`."""

  def __init__(self, loss: float = 0.0, rate_mbit: float | None = None, udp_only: bool = False):
    self.loss, self.rate_mbit, self.udp_only = loss, rate_mbit, udp_only
    self.name = f"aggregathor-{uuid.uuid4().hex[:8]}"
    self.method = ""
    self._bpffs: str | None = None

  def __enter__(self) -> "LossyLoopback":
    self.open()
    return self

  def __exit__(self, *_) -> None:
    self.close()

  def command(self, command: Sequence[str]) -> list[str]:
    """`command` run inside the namespace."""
    return ["ip", "netns", "exec", self.name, *command]

  def _tc(self, *args: str) -> subprocess.CompletedProcess:
    return _run(self.command(["tc", *args]))

  def open(self) -> None:
    result = _run(["ip", "netns", "add", self.name])
    if result.returncode:
      raise RuntimeError(f"ip netns add: {result.stderr.strip()}")
    try:
      self._check(_run(self.command(["ip", "link", "set", "lo", "up"])), "ip link set lo up")
      self._shape()
    except BaseException:
      self.close()
      raise

  def reshape(self, loss: float, rate_mbit: float | None = None) -> None:
    """Changes the link's loss and rate, for the processes already running in it."""
    self._tc("qdisc", "del", "dev", "lo", "root")
    self._tc("qdisc", "del", "dev", "lo", "clsact")
    self._unmount()
    self.loss, self.rate_mbit = loss, rate_mbit
    self._shape()

  def _shape(self) -> None:
    rate = ["rate", f"{self.rate_mbit:g}mbit"] if self.rate_mbit else []
    loss = ["loss", f"{100 * self.loss:g}%"] if self.loss and not self.udp_only else []
    if (rate or loss) and self._tc("qdisc", "add", "dev", "lo", "root", "netem", *loss, *rate).returncode == 0:
      parts = ["netem"]
      if not self.udp_only or not self.loss:
        self.method = "netem"
        return
    elif rate:
      # No netem: a token bucket, whose bursts must hold the loopback's largest packets.
      self._check(self._tc("qdisc", "add", "dev", "lo", "root", "tbf", *rate, "burst", "256kb", "latency", "50ms"),
                  "tc qdisc add tbf")
      parts = ["tbf"]
    else:
      parts = []
    if self.loss:
      self._bpffs = tempfile.mkdtemp(prefix="aggregathor-bpf-")
      self._check(_run(["mount", "-t", "bpf", "bpf", self._bpffs]), "mount -t bpf")
      pinned = os.path.join(self._bpffs, "drop")
      _load_pinned(_drop_program(self.loss, self.udp_only), pinned)
      self._check(self._tc("qdisc", "add", "dev", "lo", "clsact"), "tc qdisc add clsact")
      self._check(self._tc("filter", "add", "dev", "lo", "egress", "bpf", "da", "object-pinned", pinned),
                  "tc filter add bpf")
      parts.append("ebpf")
    self.method = "+".join(parts) or "none"

  @staticmethod
  def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode:
      raise RuntimeError(f"{what}: {(result.stderr or result.stdout).strip()[:300]}")

  def close(self) -> None:
    _run(["ip", "netns", "del", self.name])
    self._unmount()

  def _unmount(self) -> None:
    if self._bpffs is not None:
      _run(["umount", self._bpffs])
      shutil.rmtree(self._bpffs, ignore_errors=True)
      self._bpffs = None
