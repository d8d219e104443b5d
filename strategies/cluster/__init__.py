"""Cluster mode: a trusted parameter server that calls into worker processes over one narrow, authenticated service.

The parameter server listens on no port at all. Each worker process (`deploy.py
--cluster JSON --id workers:I`) serves two methods over gRPC with mutual TLS:
`Configure` (the job: which experiment, shard and hyper-parameters, as plain
JSON data) and `Compute` (the current weights in, one gradient row out). The
parameter server checks every row it gets for size, dtype, step and identity
before the rule sees it, and waits for none past a deadline.

Modules: `spec` (the cluster JSON and task ids), `credentials` (per-task
certificates), `wire` (the byte format of the messages), `worker` (the worker
process), `pool` (the parameter server's side), `quorum` (how many absent
workers a step tolerates), `keras_fit` and `keras_job` (a user's own Keras
model with `model.fit`: `RemoteWorkers`), `datagrams` and `udp` (rows as
authenticated UDP datagrams, for chosen workers), `mpi` and `mpi_launch` (the
workers as the ranks of one `mpirun` job, through Horovod's collectives), and
`in_graph` (TensorFlow's runtime, for trusted networks only).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
  # Imported on first use: the command-line fronts read flags before TensorFlow loads.
  if name == "RemoteWorkers":
    from strategies.cluster.keras_fit import RemoteWorkers  # pylint: disable=g-import-not-at-top
    return RemoteWorkers
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
