#!/usr/bin/env python3
"""Step rate and final accuracy per transport on a lossy, rate-limited loopback (a network namespace of its own).

Every process (n worker tasks, the parameter server) runs inside one namespace
made by `strategies.cluster.lossy_link`; the kernel drops `--loss` of all the
packets, TCP's and UDP's alike, and caps the link at `--rate-mbit` when given.
For each condition, runner.py trains MNIST's MLP (or the embedded digits)
with median over:
- grpc: the default transport, every row over mutual TLS (TCP);
- udp: the same, but all n rows as authenticated datagrams (--UDP n);
- tf: TensorFlow's own gRPC runtime, in-graph (--transport tf; trusted
  networks only);
- mpi: `mpirun -np n+1 runner.py --MPI`, Horovod's collectives over OpenMPI's
  TCP transport on the namespace's loopback (`--mca btl tcp,self`: shared
  memory would bypass the lossy link), skipped where Horovod is not installed.
Each figure is runner.py's steady-state steps/s, the step time, the gradient
throughput that makes (n rows of d float32 a step), and the final accuracy.

  python benchmarks/transport.py                                  # 0%, 1%, 5% loss; then 2% at 400 Mbit/s
  python benchmarks/transport.py --conditions 0.02:200 --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from strategies.cluster import credentials, lossy_link, spec  # pylint: disable=wrong-import-position

ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
               "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# OpenMPI over TCP on the namespace's loopback only (it leaves loopback out by default).
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo",
          "--mca", "oob_tcp_if_include", "lo", "-x", "PYTHONPATH", "-x", "TF_CPP_MIN_LOG_LEVEL"]
STEADY = re.compile(r"Trained (\d+) steps in \S+ s: \S+ steps/s \((\S+) steps/s after the first")
ACCURACY = re.compile(r"\t(\d+)\taccuracy:(\S+)\t")


def data_args() -> list[str]:
  root = pathlib.Path(os.environ.get("AGGREGATHOR_DATA", REPO_ROOT.parent / "shared" / "data")) / "mnist"
  if root.is_dir():
    return ["--experiment", "mnist", "--experiment-args", f"idx-dir:{root}"]
  return ["--experiment", "digits"]


def has_mpi() -> bool:
  check = subprocess.run([sys.executable, "-c", "import horovod.tensorflow as h, sys; sys.exit(not h.mpi_built())"],
                         env={**ENVIRONMENT, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, check=False)
  return check.returncode == 0 and shutil.which("mpirun") is not None


def start_workers(link: lossy_link.LossyLoopback, cluster_path: pathlib.Path, nb_workers: int,
                  extra: list[str]) -> list[subprocess.Popen]:
  return [subprocess.Popen(link.command([sys.executable, str(REPO_ROOT / "deploy.py"), "--cluster", str(cluster_path),
                                         "--id", f"workers:{i}", *extra]),
                           env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for i in range(nb_workers)]


def stop_workers(workers: list[subprocess.Popen]) -> None:
  for worker in workers:
    worker.terminate()
  for worker in workers:
    try:
      worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
      worker.kill()
      worker.wait(timeout=30)


def train(link: lossy_link.LossyLoopback, launcher: list[str], extra: list[str], nb_workers: int, steps: int,
          evaluation: pathlib.Path) -> dict:
  """runner.py's steady-state steps/s, final accuracy and UDP chunks lost, in the namespace."""
  command = link.command(launcher + [
      sys.executable, str(REPO_ROOT / "runner.py"),
      "--nb-workers", str(nb_workers), "--nb-decl-byz-workers", "1", "--aggregator", "median",
      *data_args(), "--max-steps", str(steps), "--evaluation-delta", str(10 * steps), "--evaluation-file",
      str(evaluation), "--evaluation-period", "-1", "--checkpoint-period", "-1", "--summary-period", "-1",
      "--start-timeout", "300", "--step-timeout", "30", *extra])
  done = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=3600)
  match = STEADY.search(done.stdout)
  accuracy = ACCURACY.findall(evaluation.read_text()) if evaluation.exists() else []
  lost = re.search(r"UDP: (\d+) chunk", done.stderr)
  if done.returncode:
    print(done.stderr[-2000:], file=sys.stderr)
  return {"steps/s": float(match[2]) if match else float("nan"),
          "accuracy": float(accuracy[-1][1]) if accuracy else float("nan"),
          "lost": int(lost[1]) if lost else 0, "status": done.returncode, "method": link.method}


def run_condition(loss: float, rate: float | None, nb_workers: int, steps: int, folder: pathlib.Path,
                  mpi: bool) -> dict:
  """Each transport's figures under `loss` and `rate` (Mbit/s, None: no limit)."""
  creds = folder / "creds"
  credentials.make_credentials(creds, nb_workers)
  results = {}
  with lossy_link.LossyLoopback(loss=0.0) as link:
    link.reshape(loss, rate)
    # The default transport, then UDP, on the same worker tasks.
    cluster_path = folder / "cluster.json"
    cluster_path.write_text(json.dumps(spec.loopback_cluster(nb_workers)))
    workers = start_workers(link, cluster_path, nb_workers, ["--credentials", str(creds), "--UDP", str(nb_workers)])
    try:
      server = ["--server", str(cluster_path), "--credentials", str(creds)]
      results["grpc"] = train(link, [], server, nb_workers, steps, folder / "grpc.tsv")
      results["udp"] = train(link, [], server + ["--UDP", str(nb_workers), "--udp-linger", "0.002"], nb_workers,
                             steps, folder / "udp.tsv")
    finally:
      stop_workers(workers)
    # TensorFlow's own gRPC runtime (--transport tf), on TensorFlow servers of their own ports.
    tf_cluster_path = folder / "tf-cluster.json"
    tf_cluster_path.write_text(json.dumps(spec.loopback_cluster(nb_workers)))
    workers = start_workers(link, tf_cluster_path, nb_workers, ["--transport", "tf"])
    try:
      results["tf"] = train(link, [], ["--server", str(tf_cluster_path), "--transport", "tf"], nb_workers, steps,
                            folder / "tf.tsv")
    finally:
      stop_workers(workers)
    if mpi:
      results["mpi"] = train(link, MPIRUN + ["-np", str(nb_workers + 1)], ["--MPI"], nb_workers, steps,
                             folder / "mpi.tsv")
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workers", type=int, default=4)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--conditions", nargs="*", default=["0", "0.01", "0.05", "0.02:400"],
                      metavar="LOSS[:MBIT]", help="loss fractions, each with an optional rate limit in Mbit/s")
  flags = parser.parse_args()
  why = lossy_link.available()
  if why:
    sys.exit(f"benchmarks/transport.py needs a lossy network namespace: {why}")
  import experiments  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  name = data_args()[1]
  dimension = sum(int(np.prod(v.shape)) for v in experiments.get(name).build_model().trainable_variables)
  row_mb = 4 * dimension / 1e6
  mpi = has_mpi()
  print(f"{name}, d={dimension}, n={flags.workers}, median, {flags.steps} steps"
        f"{'' if mpi else '; MPI: no Horovod with MPI here (make mpi), left out'}")
  print("| loss | rate | link | transport | steps/s | ms/step | gradients MB/s | vs grpc | accuracy | chunks lost |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  with tempfile.TemporaryDirectory(prefix="aggregathor-transport-") as folder:
    for index, condition in enumerate(flags.conditions):
      loss, _, rate = condition.partition(":")
      where = pathlib.Path(folder) / str(index)
      where.mkdir()
      result = run_condition(float(loss), float(rate) if rate else None, flags.workers, flags.steps, where, mpi)
      for transport, figures in result.items():
        rate_of = figures["steps/s"]
        print(f"| {100 * float(loss):g}% | {rate + ' Mbit/s' if rate else '-'} | {figures['method']} | {transport} | "
              f"{rate_of:.1f} | {1000 / rate_of:.1f} | {rate_of * flags.workers * row_mb:.1f} | "
              f"{rate_of / result['grpc']['steps/s']:.2f} | {figures['accuracy']:.4f} | "
              f"{figures['lost'] if transport == 'udp' else '-'} |", flush=True)


if __name__ == "__main__":
  main()
