"""What a real Byzantine worker process sends: the attack run on its own gradients.

It sees no honest worker's row, so it computes `nb_workers - nb_real_byz_workers`
gradients of its own to stand for theirs (the attacks' mean and spread), and
sends the attack's vector. Shared by the experiment and Keras worker jobs.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from aggregathor import attacks, gars


class RealAttack:
  """One job's attack, with its arguments resolved and checked against the job's n and f."""

  def __init__(self, job: Mapping[str, Any], attack: str, attack_args: Mapping[str, Any]):
    self.attack = attacks.get(attack)
    self.args = self.attack.resolve_args(dict(attack_args))
    if "gar_args" in self.args and self.args["gar_args"] is None:
      self.args["gar_args"] = dict(job["aggregator_args"])  # the parameter server's rule, as it runs there
    self.rule = gars.get(job["aggregator"])
    self.nb_byzantine = max(job["nb_real_byz_workers"], 1)
    self.nb_decl_byz_workers = job["nb_decl_byz_workers"]
    self.attack.check(job["nb_workers"], self.nb_byzantine, self.nb_decl_byz_workers, **self.args)
    self.nb_estimates = job["nb_workers"] - self.nb_byzantine  # the honest rows it stands in for

  def __call__(self, estimates: list[tf.Tensor]) -> np.ndarray:
    """The row to send, from this worker's stand-ins for the honest rows."""
    byzantine = self.attack(tf.stack(estimates), self.nb_byzantine, self.nb_decl_byz_workers, gar=self.rule,
                            **self.args)
    return np.asarray(byzantine[0], np.float32)

  def __str__(self) -> str:
    return str(self.attack)
