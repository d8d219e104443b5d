"""The UDP transport: the receiver and sender on real sockets, a real lossy loopback, and real processes.

The lossy link is a network namespace each test makes itself (strategies.cluster.lossy_link): the kernel drops
the packets. Where this machine cannot make one (not root, no tc), the processes' own drop rate
(deploy.py --udp-drop-rate) stands in, as the tests say when they skip.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from strategies.cluster import datagrams, lossy_link, udp
from strategies.cluster.spec import Address, ClusterError

NETNS = lossy_link.available()
needs_netns = pytest.mark.skipif(NETNS is not None, reason=f"no lossy network namespace here: {NETNS}")


def free_udp_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def receiver(dimension=1000, workers=2, fill="nan", datagram_bytes=256, linger=0.005):
  config = udp.UdpConfig(workers, Address("127.0.0.1", free_udp_port()), datagram_bytes, fill, linger)
  return udp.UdpReceiver(config, dimension)


def sender(rx: udp.UdpReceiver, worker: int, drop_rate=0.0) -> udp.UdpSender:
  return udp.UdpSender(rx.job_field(worker), worker, drop_rate, seed=0)


def settle(rx: udp.UdpReceiver) -> None:
  time.sleep(0.05)
  rx.drain(time.monotonic())


def test_rows_are_reassembled_and_lost_chunks_filled_by_policy():
  for fill, expected in (("nan", np.nan), ("zero", 0.0)):
    rx = receiver(fill=fill)
    try:
      row = np.arange(1000, dtype=np.float32)
      tx = sender(rx, 0)
      packets = datagrams.encode(0, 3, row, tx.key, rx.per_chunk)
      rx.begin(3)
      for index, packet in enumerate(packets):
        if index != 2:  # chunk 2 is lost
          tx.socket.send(packet)
      settle(rx)
      got, delivered = rx.finish(0)
      assert delivered == pytest.approx(1 - 1 / rx.nb_chunks)
      lost = slice(2 * rx.per_chunk, 3 * rx.per_chunk)
      np.testing.assert_array_equal(np.delete(got, np.r_[lost]), np.delete(row, np.r_[lost]))
      np.testing.assert_array_equal(got[lost], np.full(rx.per_chunk, expected, np.float32))
      assert rx.finish(1) == (None, 0.0)  # worker 1 sent nothing: absent
      assert rx.lost == {0: 1, 1: rx.nb_chunks}
    finally:
      rx.close()


def test_the_last_policy_keeps_each_coordinate_last_received():
  rx = receiver(fill="last")
  try:
    tx = sender(rx, 1)
    rx.begin(0)
    tx.send(0, np.full(1000, 5.0, np.float32))
    settle(rx)
    rx.finish(1)
    rx.begin(1)
    packets = datagrams.encode(1, 1, np.full(1000, 7.0, np.float32), tx.key, rx.per_chunk)
    for packet in packets[1:]:
      tx.socket.send(packet)
    settle(rx)
    got, _ = rx.finish(1)
    assert set(got[:rx.per_chunk]) == {5.0} and set(got[rx.per_chunk:]) == {7.0}
  finally:
    rx.close()


def test_forged_replayed_stale_and_foreign_datagrams_are_dropped_and_counted():
  rx = receiver(workers=2)
  try:
    honest, other = sender(rx, 0), sender(rx, 1)
    row = np.ones(1000, np.float32)
    rx.begin(4)
    first = datagrams.encode(0, 4, row, honest.key, rx.per_chunk)[0]
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = (rx.config.address.host, rx.config.address.port)
    for packet in [
        first, first,  # the second is a replay
        datagrams.encode(0, 4, row * 9, other.key, rx.per_chunk)[1],  # worker 1 posing as worker 0: forged
        datagrams.encode(0, 3, row, honest.key, rx.per_chunk)[1],  # an earlier step's
        datagrams.encode(7, 4, row, b"x" * 32, rx.per_chunk)[0],  # a worker that sends no UDP
        b"\0" * 3000, b"AGD1",  # oversized, malformed
    ]:
      attacker.sendto(packet, target)
    attacker.close()
    settle(rx)
    assert rx.dropped == {"replayed": 1, "forged": 1, "stale": 1, "unknown-worker": 1, "oversized": 1,
                          "malformed": 1}
    got, delivered = rx.finish(0)
    assert delivered == 1 / rx.nb_chunks and set(got[:rx.per_chunk]) == {1.0}  # the forged 9s never landed
    stats = rx.stats()
    assert stats["udp/dropped"] == 6 and stats["udp/delivery/worker-00"] == delivered
  finally:
    rx.close()


def test_a_row_settles_once_answered_complete_or_lingered():
  rx = receiver(workers=1, linger=0.05)
  try:
    tx = sender(rx, 0)
    rx.begin(0)
    packets = datagrams.encode(0, 0, np.ones(1000, np.float32), tx.key, rx.per_chunk)
    for packet in packets:
      tx.socket.send(packet)
    settle(rx)
    now = time.monotonic()
    assert rx.complete(0) and not rx.settled(0, None, now)  # no answer yet: its loss and accuracy are to come
    assert rx.settled(0, now, now)
    rx.begin(1)
    tx.socket.send(datagrams.encode(0, 1, np.ones(1000, np.float32), tx.key, rx.per_chunk)[0])
    settle(rx)
    answered = time.monotonic()
    assert not rx.settled(0, answered, answered + 0.01)
    assert rx.settled(0, answered, answered + 0.06)
    assert rx.next_settle({0: answered}) == pytest.approx(answered + 0.05)
  finally:
    rx.close()


def test_bad_settings_say_what_to_do():
  with pytest.raises(ValueError, match="--udp-fill 'drop': expected one of nan, zero, last"):
    udp.UdpConfig(1, Address("127.0.0.1", 1), fill="drop")
  with pytest.raises(ValueError, match="1472 fits a 1500-byte MTU"):
    udp.UdpConfig(1, Address("127.0.0.1", 1), datagram_bytes=40)
  held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
  held.bind(("127.0.0.1", 0))
  try:
    config = udp.UdpConfig(1, Address("127.0.0.1", held.getsockname()[1]))
    with pytest.raises(ClusterError, match="free that UDP port or fix the cluster JSON"):
      udp.UdpReceiver(config, 10)
  finally:
    held.close()


def test_the_sender_side_drop_rate_drops_that_share():
  rx = receiver(dimension=100_000, workers=1)
  try:
    tx = sender(rx, 0, drop_rate=0.1)
    sent = tx.send(0, np.zeros(100_000, np.float32))
    assert sent == pytest.approx(0.9 * rx.nb_chunks, rel=0.1)
  finally:
    rx.close()


MEASURE = """
import socket, sys, time
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0)); r.setblocking(False)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
got = 0
for _ in range(20000):
  s.sendto(b"x" * 1000, r.getsockname())
  try:
    while True:
      r.recv(2000); got += 1
  except BlockingIOError:
    pass
time.sleep(0.2)
try:
  while True:
    r.recv(2000); got += 1
except BlockingIOError:
  pass
print(got)
"""


@needs_netns
def test_the_lossy_loopback_loses_what_it_is_told_in_the_kernel():
  with lossy_link.LossyLoopback(loss=0.05) as link:
    received = int(subprocess.run(link.command([sys.executable, "-c", MEASURE]), capture_output=True, text=True,
                                  check=True, timeout=60).stdout)
    assert 0.04 < 1 - received / 20000 < 0.06, (link.method, received)
    link.reshape(0.0)
    received = int(subprocess.run(link.command([sys.executable, "-c", MEASURE]), capture_output=True, text=True,
                                  check=True, timeout=60).stdout)
    assert received == 20000


MNIST = ["--aggregator", "median", "--nb-decl-byz-workers", "1", "--max-steps", "400", "--learning-rate-args",
         "initial-rate:0.1", "--evaluation-delta", "10000", "--log-period", "1"]


def run_ps(cluster, name: str, *args: str) -> tuple[float, str]:
  ps = cluster.start_ps(*MNIST, "--evaluation-file", f"{name}.tsv", *args, log=f"{name}.log")
  log = cluster.root / f"{name}.log"
  assert ps.wait(timeout=600) == 0, log.read_text()[-3000:]
  (step, accuracy), = cluster.evaluations(cluster.root / f"{name}.tsv")
  assert step == 400
  return accuracy, log.read_text()


def test_at_2_percent_loss_accuracy_stays_within_a_point_of_the_lossless_run(make_cluster, shared_data):
  cluster = make_cluster(4)
  link = None
  if NETNS is None:
    link = lossy_link.LossyLoopback(loss=0.0, udp_only=True)
    link.open()
    cluster.wrap = link.command
    extra = ()
  else:
    extra = ("--udp-drop-rate", "0.02")  # the stand-in: the workers drop their own datagrams
  try:
    mnist = ("--experiment", "mnist", "--experiment-args", f"idx-dir:{shared_data / 'mnist'}")
    cluster.start_workers(common=("--UDP", "3"))
    lossless, _ = run_ps(cluster, "lossless", *mnist, "--UDP", "3")
    if link is not None:
      link.reshape(0.02)
    else:
      cluster.stop()
      cluster.workers.clear()
      cluster.start_workers(common=("--UDP", "3", *extra))
    lossy, log = run_ps(cluster, "lossy", *mnist, "--UDP", "3")
  finally:
    cluster.stop()
    if link is not None:
      link.close()
  lost = re.search(r"UDP: (\d+) chunk\(s\) lost \(([^)]*)\)", log)
  assert lost, log[-3000:]
  # 400 steps, 3 UDP workers, 224 chunks each: about 2% of 268800 chunks lost, none from worker 3 (TCP).
  assert 0.01 * 400 * 3 * 224 < int(lost[1]) < 0.03 * 400 * 3 * 224, lost[0]
  assert "worker 3" not in lost[2]
  assert lossless > 0.85 and abs(lossy - lossless) <= 0.01, (lossless, lossy)


FLOOD = """
import os, socket, sys, time
from strategies.cluster import datagrams
import numpy as np
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
forged = datagrams.encode(0, 0, np.ones(400, np.float32), os.urandom(32), 355)
kinds = [lambda: os.urandom(int.from_bytes(os.urandom(2), "little") % 2000), lambda: b"\\0" * 5000,
         lambda: forged[0], lambda: b"AGD1" + os.urandom(60)]
end, sent = time.monotonic() + seconds, 0
while time.monotonic() < end:
  sock.sendto(kinds[sent % len(kinds)](), (host, port)); sent += 1
  if sent % 10 == 0:  # about 10,000 datagrams a second: a flood, not this 2-core machine's whole time
    time.sleep(0.001)
print("flood sent", sent, flush=True)
"""
DIGITS = ["--experiment", "digits", "--aggregator", "median", "--nb-decl-byz-workers", "1", "--log-period", "0.5"]


def test_refusals_say_why_and_a_flood_of_bad_datagrams_neither_crashes_nor_stalls_the_ps(make_cluster):
  cluster = make_cluster(4)
  cluster.start_workers(common=("--UDP", "2"))
  # A rule that scores whole rows, with NaN for what is lost: refused before any step.
  ps = cluster.start_ps(*DIGITS[:2], "--aggregator", "krum", "--nb-decl-byz-workers", "0", "--UDP", "2",
                        log="krum.log")
  assert ps.wait(timeout=120) != 0
  assert "krum then refuses whole rows" in (cluster.root / "krum.log").read_text()
  # Worker 2 was not started to send over UDP: it refuses, and the parameter server says how to fix it.
  ps = cluster.start_ps(*DIGITS, "--UDP", "3", "--max-steps", "5", log="refused.log")
  assert ps.wait(timeout=120) != 0
  text = (cluster.root / "refused.log").read_text()
  assert "asks worker 2 to send its rows over UDP" in text and "deploy.py ... --UDP N" in text, text[-3000:]

  host, port = cluster.spec["ps"][0].rsplit(":", 1)
  ps = cluster.start_ps(*DIGITS, "--UDP", "2", "--max-steps", "300", "--step-timeout", "5",
                        "--evaluation-delta", "1000", "--evaluation-file", "eval.tsv", log="flooded.log")
  log = cluster.root / "flooded.log"
  cluster.wait_for_step(log, ps, 1)
  flood = cluster.spawn([sys.executable, "-c", FLOOD, host, port, "60"], cluster.root / "flood.log")
  assert ps.wait(timeout=300) == 0, log.read_text()[-3000:]
  flood.terminate()
  flood.wait(timeout=10)
  text = log.read_text()
  (step, accuracy), = cluster.evaluations(cluster.root / "eval.tsv")
  assert step == 300 and accuracy > 0.8
  dropped = re.search(r"datagrams dropped: (.*)", text)[1]
  for reason in ("forged", "malformed", "oversized"):
    assert re.search(rf"{reason} x\d+", dropped), dropped
  assert not re.search(r"Step \d+ goes on without", text)  # no worker missed a deadline for it
