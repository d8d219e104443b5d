"""strategies.cluster.party: HiPS across processes, party servers between their own workers and the global PS."""

from __future__ import annotations

import re

import pytest

from strategies.cluster import worker

COMMON = ["--experiment", "digits", "--nb-workers", "4", "--parties", "2", "--max-steps", "20",
          "--evaluation-delta", "10", "--checkpoint-dir", "-", "--no-wait", "--learning-rate-args", "initial-rate:0.2"]


@pytest.fixture
def hips(make_cluster):
  """A global cluster of two party servers, each the PS of its own party of two worker processes."""
  global_cluster = make_cluster(2, "global")
  parties = [make_cluster(2, f"party-{p}") for p in range(2)]
  for party in parties:
    party.start_workers()
  for index, party in enumerate(parties):
    global_cluster.start_worker(index, "--party-cluster", str(party.spec_path), "--party-credentials",
                                str(party.credentials), wait=False)
  for index, process in global_cluster.workers.items():
    global_cluster.wait_for(global_cluster.root / f"worker-{index}.log", "serving on", process)
  return global_cluster


def test_party_servers_train_as_local_mode_does_then_take_an_asynchronous_job(hips):
  # Synchronous, 2-bit pushes with each party's residual: the same model in one process or seven.
  synchronous = [*COMMON, "--party-compression", "2bit", "--party-compression-args", "threshold:0.01",
                 "--local-steps", "2"]
  ps = hips.start_ps(*synchronous, "--evaluation-file", "cluster.tsv")
  assert ps.wait(timeout=300) == 0, (hips.root / "ps.log").read_text()[-3000:]
  local = hips.start_local(*synchronous, "--evaluation-file", "local.tsv")
  assert local.wait(timeout=300) == 0, (hips.root / "local.log").read_text()[-3000:]
  losses = [[float(line.split("loss:")[1]) for line in (hips.root / name).read_text().splitlines()]
            for name in ("cluster.tsv", "local.tsv")]
  assert len(losses[0]) == 1 and abs(losses[0][0] - losses[1][0]) < 1e-4 * max(1.0, losses[1][0]), losses
  log = (hips.root / "ps.log").read_text()
  assert "HiPS across processes: 4 workers in 2 parties" in log
  assert re.search(r"Sent \S+ MB of compressed gradients \(16\.0x less", log), log[-2000:]
  # The same party servers take the next job: DC-ASGD, each party's push applied as it arrives.
  ps = hips.start_ps(*COMMON, "--asynchronous", "--global-update", "dc-asgd", "--evaluation-file", "async.tsv",
                     log="async.log")
  assert ps.wait(timeout=300) == 0, (hips.root / "async.log").read_text()[-3000:]
  log = (hips.root / "async.log").read_text()
  assert re.search(r"Staleness of the parties' pushes \(dc-asgd\): mean \S+, max \d+ global updates, over 20 pushes",
                   log), log[-2000:]
  accuracy = float((hips.root / "async.tsv").read_text().split("accuracy:")[1].split("\t")[0])
  assert accuracy > 0.3, accuracy  # chance is 0.1


def test_a_plain_worker_refuses_a_party_job_and_says_what_to_start():
  job = {"run": "r", "kind": "party", "seed": 0, "worker": 1, "nb_workers": 4, "parties": 2,
         "nb_decl_byz_workers": 0, "nb_real_byz_workers": 0, "aggregator": "average", "aggregator_args": {},
         "gradient_clip": None, "momentum": 0.0, "dampening": 0.0, "momentum_at": "update", "dimension": 10,
         "udp": None, "experiment": "digits", "experiment_args": {}, "label_flip": False, "l1_regularize": 0.0,
         "l2_regularize": 0.0, "local_steps": 1, "learning_rate": "fixed", "learning_rate_args": {},
         "redundancy": None, "compression": None}
  assert worker.check_job(dict(job)) == job
  with pytest.raises(ValueError, match="--party-cluster JSON --party-credentials DIR"):
    worker.Responder(1).take(job)
  with pytest.raises(ValueError, match="party 2 out of range for 2 parties"):
    worker.check_job({**job, "worker": 2})
  with pytest.raises(ValueError, match="unknown"):
    worker.check_job({**job, "shard": 1})  # a data share is for a party's workers' experiment jobs
  experiment = {key: value for key, value in job.items() if key != "parties"}
  assert worker.check_job({**experiment, "kind": "experiment", "shard": 3})["shard"] == 3
  with pytest.raises(ValueError, match="data share 4 out of range"):
    worker.check_job({**experiment, "kind": "experiment", "shard": 4})
