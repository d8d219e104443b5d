#!/usr/bin/env python3
"""Cluster throughput on loopback: steps/s of real worker processes, per transport, beside local mode.

For each number of workers n and each rule, three runs of runner.py train the
same experiment (default: MNIST's MLP 784-100-10, per-worker batch 32, from
$AGGREGATHOR_DATA or ../shared/data; the embedded digits when it is absent):
- local: the n workers simulated in one process (ByzantineStrategy);
- grpc: n worker processes (deploy.py), which the parameter server calls over
  mutual TLS, the secure default;
- tf: n TensorFlow servers (deploy.py --transport tf), in-graph.
Each is the steady-state rate runner.py prints (its first steps, which build
and trace, left out). One deployment of n workers serves both rules' runs.

The physical floor: a step moves the weights to each worker and a row back,
2·n·d·4 bytes; the loopback bandwidth, measured here with one TCP stream,
gives the time those bytes take at best, shown against the step's time.
Targets at n=4 with the MLP: grpc >= 0.8x local, and grpc >= tf / 1.2.

  python benchmarks/cluster.py                        # n = 1, 2, 4, 8; average and krum
  python benchmarks/cluster.py --workers 4 --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from strategies.cluster import spec  # pylint: disable=wrong-import-position
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
STEADY = re.compile(r"Trained (\d+) steps in \S+ s: \S+ steps/s \((\S+) steps/s after the first")
TRANSPORTS = ("local", "grpc", "tf")


def loopback_bandwidth(megabytes: int = 256) -> float:
  """Bytes per second of one TCP stream over 127.0.0.1."""
  chunk = b"\0" * (1 << 20)
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def sink():
      connection, _ = listener.accept()
      with connection:
        while connection.recv(1 << 20):
          pass

    receiver = threading.Thread(target=sink)
    receiver.start()
    with socket.create_connection(listener.getsockname()) as sender:
      started = time.perf_counter()
      for _ in range(megabytes):
        sender.sendall(chunk)
      sender.shutdown(socket.SHUT_WR)
      receiver.join()
      return megabytes * len(chunk) / (time.perf_counter() - started)


class Deployment:
  """n worker processes on 127.0.0.1 for one transport; stopped by PID."""

  def __init__(self, root: pathlib.Path, nb_workers: int, transport: str):
    self.root = root
    self.spec = root / f"cluster-{transport}-{nb_workers}.json"
    self.spec.write_text(json.dumps(spec.loopback_cluster(nb_workers)))
    self.credentials = root / f"creds-{nb_workers}"
    if not self.credentials.exists():
      subprocess.run([sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(self.spec),
                      "--make-credentials", str(self.credentials)], env=ENVIRONMENT, check=True,
                     capture_output=True)
    self.processes = []
    self.logs = [root / f"worker-{transport}-{nb_workers}-{i}.log" for i in range(nb_workers)]
    for index, log in enumerate(self.logs):
      with open(log, "w", encoding="utf-8") as handle:
        self.processes.append(subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(self.spec), "--id", f"workers:{index}",
             "--credentials", str(self.credentials), "--transport", transport],
            cwd=root, env=ENVIRONMENT, stdout=handle, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 300
    for process, log in zip(self.processes, self.logs):
      while "serving on" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
          self.stop()
          raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)

  def stop(self) -> None:
    for process in self.processes:
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    for process in self.processes:
      try:
        process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_training(args: list[str], log: pathlib.Path) -> float:
  """Runs runner.py; its steady-state steps/s."""
  with open(log, "w", encoding="utf-8") as handle:
    status = subprocess.run([sys.executable, str(REPO_ROOT / "runner.py"), *args], cwd=log.parent, env=ENVIRONMENT,
                            stdout=handle, stderr=subprocess.STDOUT, timeout=900, check=False).returncode
  text = log.read_text(errors="replace")
  match = STEADY.search(text)
  if status != 0 or not match:
    raise RuntimeError(f"runner.py {' '.join(args)} exited with {status}:\n{text[-3000:]}")
  return float(match[2])


def experiment_args() -> list[str]:
  data = pathlib.Path(os.environ.get("AGGREGATHOR_DATA", REPO_ROOT.parent / "shared" / "data"))
  if (data / "mnist").is_dir():
    return ["--experiment", "mnist", "--experiment-args", f"idx-dir:{data / 'mnist'}"]
  print(f"(no MNIST under {data}: the embedded digits experiment instead)")
  return ["--experiment", "digits"]


def main(argv=None) -> dict[tuple[int, str, str], float]:
  """Prints the table; returns steps/s per (n, rule, transport)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workers", default="1,2,4,8", help="comma-separated numbers of workers")
  parser.add_argument("--rules", default="average,krum", help="comma-separated rules (f=0; krum needs n >= 3)")
  parser.add_argument("--transports", default=",".join(TRANSPORTS), help="among local, grpc and tf")
  parser.add_argument("--steps", type=int, default=300, help="steps per run")
  flags = parser.parse_args(argv)
  counts = [int(n) for n in flags.workers.split(",")]
  rules = flags.rules.split(",")
  transports = flags.transports.split(",")
  bandwidth = loopback_bandwidth()
  experiment = experiment_args()
  common = [*experiment, "--max-steps", str(flags.steps), "--evaluation-period", "-1", "--checkpoint-period", "-1",
            "--summary-period", "-1", "--log-period", "-1", "--no-wait", "--checkpoint-dir", "-"]
  dimension = 784 * 100 + 100 + 100 * 10 + 10 if "mnist" in experiment else None
  results: dict[tuple[int, str, str], float] = {}
  with tempfile.TemporaryDirectory(prefix="aggregathor-cluster-bench-") as temporary:
    root = pathlib.Path(temporary)
    for n in counts:
      for transport in transports:
        deployment = Deployment(root, n, transport) if transport != "local" else None
        try:
          for rule in rules:
            if rule == "krum" and n < 3:
              continue
            args = [*common, "--aggregator", rule, "--nb-workers", str(n)]
            if deployment is not None:
              args += ["--server", str(deployment.spec), "--credentials", str(deployment.credentials),
                       "--transport", transport]
            results[(n, rule, transport)] = run_training(args, root / f"ps-{transport}-{n}-{rule}.log")
            print(f"n={n} {rule} {transport}: {results[(n, rule, transport)]:.1f} steps/s", flush=True)
        finally:
          if deployment is not None:
            deployment.stop()

  print(f"\nloopback bandwidth (one TCP stream): {bandwidth / 1e9:.2f} GB/s; {' '.join(experiment)}; "
        f"{flags.steps} steps per run, steady-state steps/s")
  header = "| n | rule | " + " | ".join(transports) + " | grpc/local | grpc/tf | transfer floor / grpc step |"
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for n in counts:
    for rule in rules:
      if (n, rule, transports[0]) not in results:
        continue
      row = [f"{results.get((n, rule, t), float('nan')):.1f}" for t in transports]
      local, grpc, tf_rate = (results.get((n, rule, t)) for t in ("local", "grpc", "tf"))
      ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"  # pylint: disable=unnecessary-lambda-assignment
      floor = "-"
      if dimension and grpc:
        floor = f"{2 * n * dimension * 4 / bandwidth * 1e3:.3f} ms / {1e3 / grpc:.2f} ms"
      print(f"| {n} | {rule} | " + " | ".join(row) + f" | {ratio(grpc, local)} | {ratio(grpc, tf_rate)} | {floor} |")
  if (4, "average", "grpc") in results:
    local, grpc, tf_rate = (results.get((4, "average", t)) for t in ("local", "grpc", "tf"))
    if local:
      print(f"target grpc >= 0.8x local at n=4 (average): {grpc / local:.2f}x "
            f"{'PASS' if grpc >= 0.8 * local else 'MISS'}")
    if tf_rate:
      print(f"target grpc >= tf / 1.2 at n=4 (average): {grpc / tf_rate:.2f}x "
            f"{'PASS' if grpc >= tf_rate / 1.2 else 'MISS'}")
  return results


if __name__ == "__main__":
  main()
