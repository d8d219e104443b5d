"""A rogue worker rank for the MPI tests: it takes the job as a worker would, then misbehaves.

  mpirun -np N python runner.py --MPI ... : -np 1 python rogue_rank.py MODE

MODE:
- malformed: each step, one of a row 4 MB too long, a replay of its previous
  answer, a wrong magic, a wrong count, a truncated row, or (every sixth step) a
  well-formed row of NaNs;
- (the other modes send rows of zeros until step 3)
- dtype: at step 3, float32 values where the gather takes bytes (Horovod cannot
  match the collective);
- stall: at step 3, stops answering (sleeps);
- die: at step 3, kills itself (SIGKILL).
"""

import json
import os
import signal
import sys
import time

import numpy as np

from strategies.cluster import mpi, wire

EVENT_STEP = 3


class Rogue:

  def __init__(self, mode: str, collectives: mpi.Collectives):
    self.mode = mode
    self.collectives = collectives
    self.dimension = 0
    self.previous = None

  def configure(self, message: bytes) -> bytes:
    job = json.loads(message)
    self.dimension = job["dimension"]
    return json.dumps({"worker": job["worker"], "dimension": job["dimension"], "run": job["run"]}).encode()

  def answer(self, request: bytes) -> bytes:
    step, _ = wire.decode_weights(request, self.dimension)
    d = self.dimension
    good = wire.encode_row(step, np.full(d, np.nan if self.mode == "malformed" else 0.0, np.float32), 0.0, 0.0)
    if self.mode == "malformed":
      answers = [
          lambda: wire.encode_row(step, np.zeros(d + (1 << 20), np.float32), 0.0, 0.0),  # 4 MB too long
          lambda: self.previous or good,  # replayed
          lambda: b"EVIL" + good[4:],  # magic
          lambda: wire.ROW_HEADER.pack(wire.ROW_MAGIC, step, d - 1, 0.0, 0.0) + good[wire.ROW_HEADER.size:],  # count
          lambda: good[:len(good) // 2],  # truncated
          lambda: good,
      ]
      answer = answers[step % len(answers)]()
      self.previous = good
      return answer
    if step == EVENT_STEP:
      if self.mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
      if self.mode == "stall":
        time.sleep(3600)
      if self.mode == "dtype":
        hvd, tf = self.collectives.hvd, self.collectives._tf  # pylint: disable=protected-access
        splits = [1] + [0] * (self.collectives.size - 1)
        hvd.alltoall(tf.constant([1.0]), splits=tf.constant(splits, tf.int32), name="aggregathor_gather")
        time.sleep(3600)
    return good


def main(mode: str) -> None:
  rank = mpi.WorkerRank(responder=Rogue(mode, None))
  rank.responder.collectives = rank.collectives
  print(f"rogue rank {rank.collectives.rank} ({mode})", flush=True)
  sys.exit(rank.serve())


if __name__ == "__main__":
  main(sys.argv[1])
