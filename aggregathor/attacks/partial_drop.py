"""Partial drop: honest-looking gradients with coordinates lost in transit."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from aggregathor import attacks
from aggregathor.attacks import _common

SOURCES = ("mean", "worker")


@attacks.register
class PartialDrop(attacks.Attack):
  """Honest-looking Byzantine gradients with a random fraction of their coordinates lost.

  A network-level fault rather than a crafted attack: AggregaThor (Damaskinos,
  El-Mhamdi, Guerraoui, Guirguis, Rouault, "AggregaThor: Byzantine Machine
  Learning via Robust Gradient Aggregation", SysML 2019) sends gradients over
  unreliable UDP links, where lost packets leave holes in the received
  gradients. Each Byzantine gradient starts as the honest mean (or a uniformly
  drawn honest worker's gradient, independently per Byzantine worker), then
  every coordinate independently is replaced by `fill` (NaN by default, as an
  unfilled hole; 0 models a receiver that zero-fills) with probability
  `probability`. Any n and f.

  Args:
    probability: the chance of each coordinate being dropped, in [0, 1] (default 0.1).
    fill: the value of a dropped coordinate, any float (default NaN).
    source: "mean" (default) or "worker", what the Byzantine gradients start from.
    seed: None (default) uses TensorFlow's global random stream; an int >= 0
      draws statelessly, so the same seed always drops the same coordinates.
  """

  name = "partial-drop"
  reference = "Damaskinos et al., SysML 2019 (lossy UDP transport)"
  params = {"probability": 0.1, "fill": math.nan, "source": "mean", "seed": None}

  def check(self, n: int, f_real: int, f_decl: int, probability: float, fill: float, source: str,
            seed: int | None) -> None:
    probability = _common.check_number(self.name, "probability", probability, minimum=0)
    if probability > 1:
      raise ValueError(f"attack {self.name} needs 0 <= probability <= 1, got probability={probability:g}")
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.integer, np.floating)):
      raise ValueError(f"attack {self.name} expects fill as a number (NaN and ±inf allowed), got {fill!r}")
    _common.check_choice(self.name, "source", source, SOURCES)
    _common.check_seed(self.name, seed)

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: object, probability: float,
              fill: float, source: str, seed: int | None) -> tf.Tensor:
    d = honest.shape[1]
    if source == "mean":
      base = _common.repeat(_common.honest_mean(honest), f_real)
    else:
      workers = _common.uniform([f_real], tf.int32, seed, stream=1, maxval=honest.shape[0])
      base = tf.gather(honest, workers)
    dropped = _common.uniform([f_real, d], honest.dtype, seed, stream=0) < probability
    return tf.where(dropped, tf.constant(fill, honest.dtype), base)
