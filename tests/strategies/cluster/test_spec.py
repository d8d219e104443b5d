"""Tests of `strategies.cluster.spec`: the cluster JSON and task ids, and their errors."""

from __future__ import annotations

import json

import pytest

from strategies.cluster.spec import Address, ClusterError, ClusterSpec, TaskId, loopback_cluster

CLUSTER = {"ps": ["127.0.0.1:7000"], "workers": ["127.0.0.1:7001", "localhost:7002", "[::1]:7003"]}


def test_parse_json_and_file(tmp_path):
  spec = ClusterSpec.parse(json.dumps(CLUSTER))
  assert spec.jobs["workers"] == [Address("127.0.0.1", 7001), Address("localhost", 7002), Address("::1", 7003)]
  assert str(spec.jobs["workers"][2]) == "[::1]:7003"
  path = tmp_path / "cluster.json"
  path.write_text(json.dumps(CLUSTER))
  assert ClusterSpec.parse(str(path)).to_json() == spec.to_json()


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ("{}", "expected a JSON object of jobs"),
    ('{"ps": "127.0.0.1:7000"}', "job 'ps' must be a non-empty list"),
    ('{"ps": []}', "job 'ps' must be a non-empty list"),
    ('{"1ps": ["127.0.0.1:7000"]}', "job name '1ps' must start with a letter"),
    ('{"ps": ["127.0.0.1"]}', 'task ps:0: expected "host:port"'),
    ('{"ps": [7000]}', 'task ps:0: expected a "host:port" string, got 7000'),
    ('{"ps": ["127.0.0.1:70000"]}', "port 70000 is out of range"),
    ('{"ps": ["127.0.0.1:7000"], "w": ["127.0.0.1:7000"]}', "127.0.0.1:7000 is both task ps:0 and task w:0"),
    ("no-such-file.json", "is neither"),
])
def test_bad_cluster_says_what_was_expected(text, message):
  with pytest.raises(ClusterError, match=message.replace("[", r"\[").replace("(", r"\(")):
    ClusterSpec.parse(text)


def test_task_ids():
  spec = ClusterSpec(CLUSTER)
  assert spec.task_id("workers:2") == TaskId("workers", 2)
  assert spec.address(TaskId("workers", 1)) == Address("localhost", 7002)
  with pytest.raises(ClusterError, match="expected --id as job:index"):
    spec.task_id("workers")
  with pytest.raises(ClusterError, match="job 'workers' has 3 task"):
    spec.task_id("workers:3")
  with pytest.raises(ClusterError, match="'eval' is not in the cluster, whose jobs are ps, workers"):
    spec.task_id("eval:0")


def test_loopback_cluster_has_distinct_free_ports_of_127_0_0_1():
  description = loopback_cluster(5)
  spec = ClusterSpec.parse(json.dumps(description))
  addresses = [*description["ps"], *description["workers"]]
  assert len(description["workers"]) == 5 and len(set(addresses)) == 6
  assert all(address.startswith("127.0.0.1:") for address in addresses)
  assert len(spec.tasks("workers", "worker job")) == 5
