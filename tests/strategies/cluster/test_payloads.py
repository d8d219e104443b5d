"""Compressed rows across processes (strategies.cluster.payloads): the codec, its refusals, and real workers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aggregathor import compression
from strategies.cluster import payloads, wire

SEGMENTS = [30, 7, 63]  # three variables, d=100


@pytest.mark.parametrize("name, args", [("topk", {"ratio": 0.1}), ("adacomp", {"compression_rate": 0.1}),
                                        ("2bit", {"threshold": 0.3})])
def test_a_payload_crosses_as_words_and_decodes_as_the_compressor_does(name, args):
  compressor = compression.get(name, 100, SEGMENTS, **args)
  codec = payloads.PayloadCodec(compressor)
  row = tf.random.stateless_normal([1, 100], seed=[1, 2])
  payload, _ = compressor.encode(row, compressor.init_state(1))
  words = codec.to_words({key: value.numpy() for key, value in payload.items()})
  assert words.dtype == wire.DTYPE and words.size == codec.words
  assert codec.size == compressor.payload_bytes + codec.padding
  np.testing.assert_array_equal(codec.decode(words), compressor.decode(payload).numpy()[0])


def test_a_payload_of_the_wrong_size_or_out_of_range_indices_is_refused():
  compressor = compression.get("topk", 100, ratio=0.05)
  codec = payloads.PayloadCodec(compressor)
  payload, _ = compressor.encode(tf.ones([1, 100]), compressor.init_state(1))
  words = codec.to_words({key: value.numpy() for key, value in payload.items()})
  with pytest.raises(wire.RefusedMessage) as refused:
    codec.decode(words[:-1])
  assert refused.value.reason == "size"
  forged = words.copy()
  # The fields are in name order: indices (int32) first; an index past d cannot decode.
  forged[:1] = np.array([100], "<i4").view(wire.DTYPE)
  with pytest.raises(wire.RefusedMessage, match="does not decode") as refused:
    codec.decode(forged)
  assert refused.value.reason == "payload"
  forged[:1] = np.array([-1], "<i4").view(wire.DTYPE)
  with pytest.raises(wire.RefusedMessage):
    codec.decode(forged)


@pytest.mark.parametrize("name", ["2bit", "topk"])
def test_worker_processes_compress_as_the_simulated_workers_do(make_cluster, name):
  # Each worker process keeps its own residual; the parameter server decodes before the rule: the same
  # training as local mode, where the pipeline compresses each simulated worker's row with its residual.
  cluster = make_cluster(3)
  cluster.start_workers()
  common = ["--experiment", "digits", "--aggregator", "median", "--nb-decl-byz-workers", "1", "--max-steps", "20",
            "--evaluation-delta", "10", "--compression", name, "--checkpoint-dir", "-", "--no-wait",
            "--study-period", "5", "--study-file"]
  ps = cluster.start_ps(*common, "cluster-study.tsv", "--evaluation-file", "cluster.tsv")
  assert ps.wait(timeout=300) == 0, (cluster.root / "ps.log").read_text()[-3000:]
  local = cluster.start_local(*common, "local-study.tsv", "--evaluation-file", "local.tsv")
  assert local.wait(timeout=300) == 0, (cluster.root / "local.log").read_text()[-3000:]
  losses = [float((cluster.root / file).read_text().split("loss:")[1]) for file in ("cluster.tsv", "local.tsv")]
  assert abs(losses[0] - losses[1]) < 1e-4 * max(1.0, losses[1]), losses
  log = (cluster.root / "ps.log").read_text()
  assert "Sent " in log and "compressed gradients" in log
  # The bytes each worker sent are the study's, as in local mode.
  header = (cluster.root / "cluster-study.tsv").read_text().splitlines()[0]
  assert "compression/bytes-per-worker" in header
