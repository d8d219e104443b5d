"""atheris fuzz target for `datagrams.parse`: `python fuzz_datagrams.py -runs=N`. Only RefusedDatagram may come out.

The first bytes of each input choose the step and the row's size; the rest is
the datagram, seeded with real ones so that the fuzzer gets past the tag.
"""

import sys

import atheris

with atheris.instrument_imports():
  from strategies.cluster import datagrams

import numpy as np

KEYS = {0: b"a" * 32, 5: b"b" * 32}
PER_CHUNK = datagrams.values_per_chunk(256)


def target(data: bytes) -> None:
  provider = atheris.FuzzedDataProvider(data)
  step = provider.ConsumeIntInRange(0, 3)
  dimension = provider.ConsumeIntInRange(1, 200)
  packet = provider.ConsumeBytes(provider.remaining_bytes())
  if len(packet) > 2 and packet[0] == 0:  # a real datagram of this row, then the fuzzer's changes to its tail
    real = datagrams.encode(5, step, np.ones(dimension, np.float32), KEYS[5], PER_CHUNK)
    packet = real[packet[1] % len(real)][:len(packet)] + packet[2:]
  try:
    chunk = datagrams.parse(packet, KEYS, step, dimension, PER_CHUNK, 256)
  except datagrams.RefusedDatagram:
    return
  assert chunk.step == step and chunk.worker in KEYS
  assert chunk.offset + chunk.values.size <= dimension and chunk.values.dtype == np.float32


if __name__ == "__main__":
  atheris.Setup(sys.argv, target)
  atheris.Fuzz()
