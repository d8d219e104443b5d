"""A HiPS party server across processes: worker p of the global cluster, and the parameter server of its own party.

Geng et al., HiPS (SIGCOMM NetAI 2018): each party trains on its own data with
its own PS and workers, and only the party's aggregate travels to the global
PS. Here a party is a cluster of its own (its JSON, its credentials: its CA
and "ps" certificate, which no other party holds), and its server is, to the
global PS, an ordinary worker task: it serves Configure and Compute over
mutual TLS, under the global cluster's certificate of worker p.

- Configure(a "party" job): the job's n workers are cut into its parties as in
  local mode (`strategies.hierarchy.party_bounds`); party p's workers
  start..stop-1 are this party's worker tasks, in order, worker i reading data
  share start + i. They get the job as an "experiment" job (uncompressed rows),
  and the party aggregates them with the job's rule and f (`GradientPipeline`,
  absent workers within its quorum as on a one-level PS).
- Compute(weights of step s): the party's workers compute step s on those
  weights, by the party's deadline; the party's aggregate goes back as the
  answer's row, as the job's compressor's payload (HiPS: 2-bit) when it has
  one, with the party's own residual. A party short of its quorum answers
  UNAVAILABLE, and the global PS counts it absent.

Nothing a worker sends is run: rows are checked by the pool as on any PS.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from aggregathor import gars
from strategies.cluster import payloads, pool as worker_pool, quorum, wire
from strategies.cluster.spec import Address, ClusterError
from strategies.cluster.worker import Responder


class PartyJob:
  """One "party" job on this party server: its workers configured, its rule, its push's encoder."""

  def __init__(self, job: Mapping[str, Any], pool: worker_pool.WorkerPool, step_timeout: float,
               start_timeout: float):
    from strategies import hierarchy  # pylint: disable=g-import-not-at-top
    from strategies.pipeline import GradientPipeline  # pylint: disable=g-import-not-at-top
    self.job = dict(job)
    party, parties, n = job["worker"], job["parties"], job["nb_workers"]
    self.start, self.stop = hierarchy.party_bounds(n, parties)[party]
    if pool.nb_workers != self.stop - self.start:
      raise ValueError(f"party {party} of {parties} has workers {self.start} to {self.stop - 1} of {n} "
                       f"({self.stop - self.start}), and this party server's cluster lists {pool.nb_workers}: "
                       "make its worker job match")
    if job["momentum"] and job["momentum_at"] != "worker":
      raise ValueError("job: a party server keeps no momentum (put it at the workers, or none)")
    self.party, self.pool, self.dimension = party, pool, job["dimension"]
    self.step_timeout, self.start_timeout, self.first = step_timeout, start_timeout, True
    self.rule_name, self.f, self.args = job["aggregator"], job["nb_decl_byz_workers"], dict(job["aggregator_args"])
    rule = gars.get(self.rule_name)
    size = self.stop - self.start
    self.tolerated = quorum.tolerated_missing(rule, self.rule_name, size, self.f, self.args)
    self.pipeline = GradientPipeline(rule, size, self.f, 0, None, self.args)
    self.pipeline.build(self.dimension, tf.float32)
    self.encoder = (payloads.PayloadEncoder(job["compression"], self.dimension)
                    if job["compression"] is not None else None)
    worker_job = {key: value for key, value in job.items() if key != "parties"}
    worker_job.update(kind="experiment", compression=None, udp=None)
    pool.configure(worker_job, first_shard=self.start)
    # One graph for each set of present workers (the full one, nearly always).
    self.aggregate = tf.function(self.pipeline.__call__)

  def answer(self, request: bytes) -> bytes:
    """The party's push for the weights of the request's step (`ClusterError` if too few workers answered)."""
    step, weights = wire.decode_weights(request, self.dimension)
    timeout = self.start_timeout if self.first else self.step_timeout
    gathered = self.pool.compute(step, weights, timeout)
    self.first = False
    missing = gathered.missing
    quorum.require(missing, self.tolerated, step, self.pool.describe, self.rule_name, self.pool.nb_workers, self.f)
    present = tuple(bool(here) for here in gathered.present) if missing else None
    push = self.aggregate(tf.constant(gathered.rows), present).numpy()
    answered = [i for i in range(self.pool.nb_workers) if gathered.present[i]]
    loss = float(np.mean(gathered.losses[answered]))
    accuracy = float(np.mean(gathered.accuracies[answered]))
    row = self.encoder.words(push) if self.encoder is not None else push
    return wire.encode_row(step, row, loss, accuracy)


class PartyResponder(Responder):
  """Party p's server: takes "party" jobs from the global PS and answers with the party's push."""

  def __init__(self, index: int, workers: Sequence[Address], credentials_dir: str, step_timeout: float = 5.0,
               start_timeout: float = 120.0):
    super().__init__(index)
    if not workers:
      raise ValueError("a party server needs its party's worker tasks (the worker job of --party-cluster)")
    self.pool = worker_pool.WorkerPool(workers, credentials_dir, step_timeout, start_timeout)
    self.step_timeout, self.start_timeout = step_timeout, start_timeout

  def take(self, job: Mapping[str, Any]) -> bytes:
    self.job = None
    if job["kind"] != "party":
      raise ValueError(f"this task is HiPS party {self.index}'s server, and the job is a worker's ({job['kind']}): "
                       "give runner.py --parties P (or start a plain worker here)")
    started = time.monotonic()
    try:
      self.job = PartyJob(job, self.pool, self.step_timeout, self.start_timeout)
    except ClusterError as error:  # its workers could not take the job: the global PS hears why
      raise ValueError(f"party {self.index}: {error}") from error
    logging.info("Party %d: job %s configured on its workers %d to %d (%s with f=%d) in %.1f s", self.index,
                 job["run"], self.job.start, self.job.stop - 1, job["aggregator"], job["nb_decl_byz_workers"],
                 time.monotonic() - started)
    return json.dumps({"worker": self.index, "dimension": self.job.dimension, "run": job["run"],
                       "udp": False}).encode()

  def configure(self, message: bytes) -> bytes:
    raise ClusterError("a party server runs over the default gRPC transport, not MPI")

  def close(self) -> None:
    self.pool.close()

