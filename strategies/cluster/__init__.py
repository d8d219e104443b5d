"""Cluster mode: a trusted parameter server that calls into worker processes over one narrow, authenticated service.

The parameter server listens on no port at all. Each worker process (`deploy.py
--cluster JSON --id workers:I`) serves two methods over gRPC with mutual TLS:
`Configure` (the job: which experiment, shard and hyper-parameters, as plain
JSON data) and `Compute` (the current weights in, one gradient row out). The
parameter server checks every row it gets for size, dtype, step and identity
before the rule sees it, and waits for none past a deadline.

Modules: `spec` (the cluster JSON and task ids), `credentials` (per-task
certificates), `wire` (the byte format of the messages), `worker` (the worker
process) and `pool` (the parameter server's side).
"""
