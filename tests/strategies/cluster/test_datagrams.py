"""The UDP datagrams of a row: the layout, the checks in their order, and a fuzz of the parser."""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import resource
import struct
import subprocess
import sys

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from strategies.cluster import datagrams

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
PER_CHUNK = datagrams.values_per_chunk(datagrams.DEFAULT_DATAGRAM_BYTES)
FUZZER = pathlib.Path(__file__).with_name("fuzz_datagrams.py")


def parse(data, step=7, dimension=1000, keys=None):
  return datagrams.parse(data, keys or {2: KEY}, step, dimension, PER_CHUNK, datagrams.DEFAULT_DATAGRAM_BYTES)


def refused(data, **kwargs) -> str:
  with pytest.raises(datagrams.RefusedDatagram) as error:
    parse(data, **kwargs)
  return error.value.reason


def test_the_layout_by_hand():
  # 20-byte header, the values, HMAC-SHA256 over both: (1472 - 52) / 4 = 355 values a datagram.
  assert PER_CHUNK == 355
  row = np.arange(1000, dtype=np.float32)
  packets = datagrams.encode(2, 7, row, KEY, PER_CHUNK)
  assert [len(p) for p in packets] == [20 + 4 * 355 + 32] * 2 + [20 + 4 * 290 + 32]
  body = b"AGD1" + struct.pack("<HQIH", 2, 7, 355, 355) + row[355:710].tobytes()
  assert packets[1] == body + hmac.new(KEY, body, hashlib.sha256).digest()
  chunks = [parse(p) for p in packets]
  assert [(c.worker, c.step, c.offset) for c in chunks] == [(2, 7, 0), (2, 7, 355), (2, 7, 710)]
  np.testing.assert_array_equal(np.concatenate([c.values for c in chunks]), row)


def test_each_refusal_has_its_reason():
  good = datagrams.encode(2, 7, np.ones(1000, np.float32), KEY, PER_CHUNK)[0]
  assert refused(good + b"x" * (datagrams.DEFAULT_DATAGRAM_BYTES - len(good) + 1)) == "oversized"
  assert refused(good[:40]) == "malformed"
  assert refused(b"EVIL" + good[4:]) == "malformed"
  assert refused(good[:-36] + good[-32:]) == "malformed"  # a value short of its count
  assert refused(good, keys={3: KEY}) == "unknown-worker"
  forged = datagrams.encode(2, 7, np.ones(1000, np.float32), OTHER_KEY, PER_CHUNK)[0]
  assert refused(forged) == "forged"  # another worker's key, or another run's
  flipped = bytearray(good)
  flipped[30] ^= 1
  assert refused(bytes(flipped)) == "forged"
  assert refused(good, step=8) == "stale"
  assert refused(good, step=6) == "future"
  # Authentic, but not on the row's grid: an offset off it, past the row, or a count that does not fit.
  off_grid = datagrams.encode(2, 7, np.ones(1000, np.float32), KEY, 100)[1]  # offset 100, 100 values
  assert refused(off_grid) == "malformed"
  short = datagrams.encode(2, 7, np.ones(500, np.float32), KEY, PER_CHUNK)[1]  # 145 values at 355, of 1000
  assert refused(short) == "malformed"
  assert refused(good, dimension=100) == "malformed"


def test_the_sizes_a_run_may_choose():
  assert datagrams.values_per_chunk(datagrams.MAX_DATAGRAM_BYTES) == (65507 - 52) // 4
  for size in (52, 65508):
    with pytest.raises(ValueError, match="1472 fits a 1500-byte MTU"):
      datagrams.values_per_chunk(size)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.integers(1, 3000), st.integers(0, 2**40), st.data())
def test_any_changed_byte_is_refused_or_the_same_chunk(dimension, step, data):
  row = np.asarray(data.draw(st.lists(st.floats(width=32, allow_nan=True), min_size=dimension,
                                      max_size=dimension)), np.float32)
  packets = datagrams.encode(2, step, row, KEY, PER_CHUNK)
  packet = bytearray(data.draw(st.sampled_from(packets)))
  position = data.draw(st.integers(0, len(packet) - 1))
  packet[position] ^= data.draw(st.integers(1, 255))
  with pytest.raises(datagrams.RefusedDatagram) as error:
    parse(bytes(packet), step=step, dimension=dimension)
  assert error.value.reason in ("malformed", "unknown-worker", "forged")


def test_a_fuzzer_feeds_the_parser_100000_inputs_without_a_crash(tmp_path):
  # atheris, coverage-guided, in a process of its own: any exception but RefusedDatagram is a crash.
  # libFuzzer's memory limit reads the peak RSS, which Linux carries across fork and exec: the fuzzer starts at
  # this pytest process's peak (2.4 GB in CI once TensorFlow's tests have run), so its 2 GB budget goes on top.
  inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
  result = subprocess.run([sys.executable, str(FUZZER), "-runs=100000", "-seed=1", f"-artifact_prefix={tmp_path}/",
                           f"-rss_limit_mb={inherited_mb + 2048}"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[3])})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Done 100000 runs" in result.stderr, result.stderr[-3000:]
