"""The bytes of a gradient row sent as UDP datagrams, each authenticated with its worker's key (HMAC-SHA256).

A row of d float32 values is cut into chunks of at most `values_per_chunk`
values; chunk k holds the values from offset k * values_per_chunk on:

    b"AGD1" | worker: u16 | step: u64 | offset: u32 | count: u16 | count float32 | tag: 32 bytes

The tag is HMAC-SHA256 over everything before it, under the key the parameter
server gave that worker for this run (over the worker's mutual-TLS channel): a
datagram can be made by that worker alone, and a datagram of another run fails
authentication. `parse` checks, in this order, and refuses with one reason word
(for counting): the length ("oversized" past the run's datagram size,
"malformed" when too short or not matching its count), the magic ("malformed"),
the worker ("unknown-worker"), the tag ("forged"), then the step and offset
against what the parameter server expects ("stale" for an earlier step,
"future" for a later one, "malformed" for an offset off the chunk grid or past
the row). Duplicates are the receiver's to count ("replayed"): a datagram holds
no state. Nothing in a datagram is ever executed or unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct

import numpy as np

MAGIC = b"AGD1"
HEADER = struct.Struct("<4sHQIH")
TAG_BYTES = 32
DTYPE = np.dtype("<f4")
KEY_BYTES = 32
# 1500-byte Ethernet MTU less the IPv4 and UDP headers: no IP fragmentation, so a lost packet loses one chunk.
DEFAULT_DATAGRAM_BYTES = 1472
MAX_DATAGRAM_BYTES = 65507  # the largest UDP payload over IPv4
MAX_CHUNK_VALUES = 0xFFFF


class RefusedDatagram(ValueError):
  """A datagram that is not one expected; `reason` is one word, for counting."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


REASONS = ("oversized", "malformed", "unknown-worker", "forged", "stale", "future")


def values_per_chunk(datagram_bytes: int) -> int:
  """How many float32 values fit in a datagram of `datagram_bytes`, with the header and tag."""
  if not HEADER.size + TAG_BYTES + DTYPE.itemsize <= datagram_bytes <= MAX_DATAGRAM_BYTES:
    raise ValueError(f"a datagram size of {datagram_bytes} bytes: expected "
                     f"{HEADER.size + TAG_BYTES + DTYPE.itemsize} to {MAX_DATAGRAM_BYTES} (1472 fits a 1500-byte "
                     "MTU without fragmentation)")
  return min(MAX_CHUNK_VALUES, (datagram_bytes - HEADER.size - TAG_BYTES) // DTYPE.itemsize)


def nb_chunks(dimension: int, per_chunk: int) -> int:
  return -(-dimension // per_chunk)


def _tag(key: bytes, body: bytes | memoryview) -> bytes:
  return hmac.digest(key, body, hashlib.sha256)


def encode(worker: int, step: int, row: np.ndarray, key: bytes, per_chunk: int) -> list[bytes]:
  """The datagrams of worker `worker`'s row for step `step`, in offset order."""
  values = np.ascontiguousarray(row, DTYPE).reshape(-1)
  datagrams = []
  for offset in range(0, values.size, per_chunk):
    chunk = values[offset:offset + per_chunk]
    body = HEADER.pack(MAGIC, worker, step, offset, chunk.size) + chunk.tobytes()
    datagrams.append(body + _tag(key, body))
  return datagrams


@dataclasses.dataclass(frozen=True)
class Chunk:
  """One authenticated chunk: worker `worker`'s values from `offset` on, for step `step`."""
  worker: int
  step: int
  offset: int
  values: np.ndarray


def parse(data: bytes | memoryview, keys: dict[int, bytes], step: int, dimension: int, per_chunk: int,
          max_bytes: int) -> Chunk:
  """The chunk in `data` if it is one of step `step` of a row of `dimension` values, from a worker of `keys`.

  `keys`: worker index -> its key; `max_bytes`: the run's datagram size.
  Raises `RefusedDatagram` otherwise, whatever the bytes.
  """
  size = len(data)
  if size > max_bytes:
    raise RefusedDatagram("oversized", f"a datagram of {size} bytes, at most {max_bytes} expected")
  if size < HEADER.size + TAG_BYTES:
    raise RefusedDatagram("malformed", f"a datagram of {size} bytes, shorter than its header and tag")
  magic, worker, got_step, offset, count = HEADER.unpack_from(data)
  if magic != MAGIC:
    raise RefusedDatagram("malformed", f"a datagram must start with {MAGIC!r}, got {bytes(magic)!r}")
  if size != HEADER.size + count * DTYPE.itemsize + TAG_BYTES:
    raise RefusedDatagram("malformed", f"a datagram of {size} bytes announcing {count} values")
  key = keys.get(worker)
  if key is None:
    raise RefusedDatagram("unknown-worker", f"a datagram from worker {worker}, which sends no rows over UDP")
  body = memoryview(data)[:size - TAG_BYTES]
  if not hmac.compare_digest(_tag(key, body), bytes(memoryview(data)[size - TAG_BYTES:])):
    raise RefusedDatagram("forged", f"a datagram claiming worker {worker} whose tag does not match its key")
  if got_step != step:
    raise RefusedDatagram("stale" if got_step < step else "future",
                          f"a datagram of step {got_step} from worker {worker}, expected step {step}")
  if offset % per_chunk or offset >= dimension or count != min(per_chunk, dimension - offset):
    raise RefusedDatagram("malformed", f"a chunk of {count} values at offset {offset}: expected chunks of "
                          f"{per_chunk} values on a row of {dimension}")
  return Chunk(worker, got_step, offset, np.frombuffer(data, DTYPE, count, HEADER.size))
