"""A rogue worker task for the cluster tests: valid credentials of worker IDENTITY, served on PORT, bad rows.

  python rogue_worker.py CREDENTIALS IDENTITY PORT

It answers Configure as a worker would, then every Compute with one of: a row
4 MB too long, a replay of its previous answer (an earlier step), a wrong
magic, a wrong count, and (every fifth step) a well-formed row of NaNs.
"""

import json
import signal
import sys
import threading
from concurrent import futures

import grpc
import numpy as np

from strategies.cluster import credentials, wire, worker


def main(directory: str, identity: int, port: int) -> None:
  state = {"dimension": 0, "previous": None}

  def configure(request, context):
    job = json.loads(request)
    state["dimension"] = job["dimension"]
    return json.dumps({"worker": job["worker"], "dimension": job["dimension"], "run": job["run"]}).encode()

  def compute(request, context):
    step, _ = wire.decode_weights(request, state["dimension"])
    d = state["dimension"]
    good = wire.encode_row(step, np.full(d, np.nan, np.float32), 0.0, 0.0)
    # Only this step's answer is built, so that the rogue answers before the honest workers (an absent worker's
    # row is read only if in by then).
    answers = [
        lambda: wire.encode_row(step, np.zeros(d + (1 << 20), np.float32), 0.0, 0.0),  # oversized: 4 MB more
        lambda: state["previous"] or good,  # replayed
        lambda: b"EVIL" + good[4:],  # malformed
        lambda: wire.ROW_HEADER.pack(wire.ROW_MAGIC, step, d - 1, 0.0, 0.0) + good[wire.ROW_HEADER.size:],  # count
        lambda: good,
    ]
    answer = answers[step % len(answers)]()
    state["previous"] = good
    return answer

  server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
  server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(worker.SERVICE, {
      "Configure": grpc.unary_unary_rpc_method_handler(configure),
      "Compute": grpc.unary_unary_rpc_method_handler(compute)})])
  if not server.add_secure_port(f"127.0.0.1:{port}", credentials.server_credentials(directory, identity)):
    sys.exit(f"cannot listen on {port}")
  stopped = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stopped.set())
  server.start()
  print("rogue serving on", port, flush=True)
  stopped.wait()
  server.stop(0)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
