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
  """One job's attack, with its arguments resolved and checked against the job's n and f.

  nb_rows, nb_byzantine, nb_declared: the rule's view when it is not the job's
  workers (a redundancy defence's rule runs across the F files, of which the
  attack's vector is one, with f the distorted files it tolerates).
  """

  def __init__(self, job: Mapping[str, Any], attack: str, attack_args: Mapping[str, Any], *,
               nb_rows: int | None = None, nb_byzantine: int | None = None, nb_declared: int | None = None):
    self.attack = attacks.get(attack)
    self.args = self.attack.resolve_args(dict(attack_args))
    if "gar_args" in self.args and self.args["gar_args"] is None:
      self.args["gar_args"] = dict(job["aggregator_args"])  # the parameter server's rule, as it runs there
    self.rule = gars.get(job["aggregator"])
    nb_rows = job["nb_workers"] if nb_rows is None else nb_rows
    self.nb_byzantine = max(job["nb_real_byz_workers"], 1) if nb_byzantine is None else nb_byzantine
    self.nb_decl_byz_workers = job["nb_decl_byz_workers"] if nb_declared is None else nb_declared
    self.attack.check(nb_rows, self.nb_byzantine, self.nb_decl_byz_workers, **self.args)
    self.nb_estimates = max(nb_rows - self.nb_byzantine, 1)  # the honest rows it stands in for (one at least)

  def __call__(self, estimates: list[tf.Tensor]) -> np.ndarray:
    """The row to send, from this worker's stand-ins for the honest rows."""
    byzantine = self.attack(tf.stack(estimates), self.nb_byzantine, self.nb_decl_byz_workers, gar=self.rule,
                            **self.args)
    return np.asarray(byzantine[0], np.float32)

  def __str__(self) -> str:
    return str(self.attack)
