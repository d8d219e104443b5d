"""AdaComp's Supervisor: an evaluator task that evaluates each checkpoint the parameter server writes.

Hardy, Le Merrer, Sericola, "Distributed deep learning on edge-devices:
feasibility via adaptive compression", IEEE NCA 2017: the Supervisor evaluates
the central model on the test set while the parameter server trains. Here it
is the cluster's evaluator task (`deploy.py --cluster JSON --id evaluator:0
--supervise CHECKPOINT_DIR`), on a host that sees the parameter server's
checkpoint directory. It reads the run's configuration from the directory's
provenance file (the experiment, its arguments, the seed), builds the model,
and for each new checkpoint restores the model's weights alone and appends a
line to its evaluation file, in the same format as runner.py's. Steps already
in the file are skipped, so a restarted Supervisor goes on where it was. It
evaluates the newest checkpoint each time it looks: on a slow host, some are
left out, never the last. It stops after `idle_timeout` seconds without a new
checkpoint. Nothing here writes to the parameter server's directory.
"""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf
from absl import logging

import experiments
from strategies import provenance, training

_STEP = re.compile(r"-(\d+)$")


def evaluated_steps(path: str) -> set[int]:
  """The steps an evaluation file already has."""
  if not os.path.exists(path):
    return set()
  steps = set()
  with open(path, encoding="utf-8") as lines:
    for line in lines:
      fields = line.split("\t")
      if len(fields) > 2 and fields[1].isdigit():
        steps.add(int(fields[1]))
  return steps


def supervise(checkpoint_dir: str, evaluation_file: str, idle_timeout: float = 600.0, poll: float = 1.0,
              start_timeout: float = 600.0) -> int:
  """Evaluates the checkpoints of `checkpoint_dir` as they come; returns how many it evaluated."""
  records = _wait_for_provenance(checkpoint_dir, start_timeout, poll)
  config = records[-1]["configuration"]
  experiment = experiments.get(config["experiment"], **config["experiment_args"])
  experiment.load()
  keras.utils.set_random_seed(config["seed"])
  model = experiment.build_model()
  checkpoint = tf.train.Checkpoint(model=model)
  eval_batch = training.evaluation_step(model)
  dataset = experiment.test_dataset()
  done = evaluated_steps(evaluation_file)
  os.makedirs(os.path.dirname(os.path.abspath(evaluation_file)), exist_ok=True)
  count = 0
  logging.info("Supervising %s (%s): evaluating each new checkpoint into %s", checkpoint_dir,
               config["experiment"], evaluation_file)
  with open(evaluation_file, "a", buffering=1, encoding="utf-8") as output:
    for path in tf.train.checkpoints_iterator(checkpoint_dir, min_interval_secs=poll, timeout=idle_timeout):
      match = _STEP.search(path)
      if match is None or int(match[1]) in done:
        continue
      step = int(match[1])
      checkpoint.restore(path).expect_partial()  # the model's weights; the optimizer and the rest are the PS's
      results = training.evaluate(eval_batch, dataset)
      output.write(training.evaluation_line(step, results) + "\n")
      os.fsync(output.fileno())
      done.add(step)
      count += 1
      logging.info("Supervisor: step %d, %s", step, ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
  logging.info("Supervisor: no new checkpoint for %g s; %d evaluated, stopping", idle_timeout, count)
  return count


def _wait_for_provenance(checkpoint_dir: str, timeout: float, poll: float) -> list[dict]:
  """The directory's provenance records, once the parameter server has written them (a clear error if never)."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.monotonic() + timeout
  while True:
    records = provenance.read(checkpoint_dir)
    if records:
      return records
    if time.monotonic() >= deadline:
      raise FileNotFoundError(f"no {provenance.FILE} in {checkpoint_dir} after {timeout:g} s: give --supervise the "
                              "parameter server's --checkpoint-dir (runner.py writes it there when the run starts)")
    time.sleep(poll)
