"""HiPS's asynchronous global parameter server: each party's push applied alone as it arrives, by ASGD or DC-ASGD.

Geng, Li, Wang, Dai, Xu, "HiPS: Hierarchical Parameter Synchronization in
Large-Scale Distributed Machine Learning", ACM SIGCOMM NetAI 2018. In its
asynchronous mode the global server applies each party's aggregate g as soon
as it arrives, computed on the weights the party fetched after its previous
push (`strategies.asynchronous.Arrivals` simulates the parties' seeded compute
times). With η the run's SGD rate, g a gradient (a party's aggregate of its
workers' rows, a row with K local steps being the worker's model change over
η), the update is one of:
- "asgd": w ← w − η·g (HiPS's w ← w − g, whose g is the model change η·g);
- "dc-asgd": Zheng, Meng, Wang, Chen, Yu, Ma, Liu, "Asynchronous Stochastic
  Gradient Descent with Delay Compensation", ICML 2017, as MXNet's DCASGD
  optimizer that HiPS runs: mom = −η·(g + wd·w + λ·g⊙g⊙(w − w_prev)), then
  w_prev ← w and w ← w + mom (λ = 0.04). As in MXNet and HiPS, w_prev is one
  buffer on the server, the weights before its previous update (the paper's
  Algorithm 1 keeps a backup per worker instead); it starts as the initial
  weights, so the first update is plain ASGD.
The staleness of a push is the updates applied since its party fetched; their
sum and maximum are kept (and checkpointed) beside the last one. A
`compressor` (HiPS: "2bit") encodes each push with its party's own residual.
"""

from __future__ import annotations

import tensorflow as tf

from strategies.asynchronous import Arrivals
from strategies.pipeline import plain_variables

UPDATES = ("asgd", "dc-asgd")


class GlobalServer(Arrivals):
  """The global PS of HiPS's asynchronous mode (see the module's docstring): `receive` a push, then `fetch`."""

  def __init__(self, nb_parties: int, dimension: int, update: str = "asgd", dc_lambda: float = 0.04,
               weight_decay: float = 0.0, compressor=None, delay_spread: float = 1.0, seed: int = 0):
    if update not in UPDATES:
      raise ValueError(f"unknown global update {update!r}: expected one of {', '.join(UPDATES)}")
    if not dc_lambda >= 0 or not weight_decay >= 0:
      raise ValueError(f"expected DC-ASGD's lambda and weight decay >= 0, got {dc_lambda} and {weight_decay}")
    if update == "asgd" and (dc_lambda != 0.04 or weight_decay):
      raise ValueError("lambda and weight decay are DC-ASGD's: give update='dc-asgd' (--global-update dc-asgd)")
    super().__init__(nb_parties, dimension, delay_spread, seed, prefix="global")
    self.update, self.dc_lambda, self.weight_decay, self.compressor = update, float(dc_lambda), float(weight_decay), \
        compressor
    with tf.init_scope(), plain_variables():
      self.previous = tf.Variable(tf.zeros([dimension]), trainable=False, name="global_previous_weights")
      self.staleness_sum = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_staleness_sum")
      self.staleness_max = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_staleness_max")
      state = compressor.init_state(nb_parties) if compressor is not None else {}
      self._residuals = {name: tf.Variable(value, trainable=False, name=f"global_compression_{name}")
                         for name, value in state.items()}

  def variables(self) -> dict[str, tf.Variable]:
    return {**super().variables(), "previous": self.previous, "staleness_sum": self.staleness_sum,
            "staleness_max": self.staleness_max,
            **{"compression_" + name: variable for name, variable in self._residuals.items()}}

  def start(self, weights: tf.Tensor) -> None:
    if not bool(self.started.numpy()):
      self.previous.assign(weights)
    super().start(weights)

  def receive(self, party: tf.Tensor, push: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """The (d,) gradient whose SGD step at rate η is the update for `party`'s `push` (d,) on the `weights` now."""
    if self.compressor is not None:
      state = {name: variable[party:party + 1] for name, variable in self._residuals.items()}
      payload, state = self.compressor.encode(push[None], state)
      for name, value in state.items():
        self._residuals[name][party:party + 1].assign(value)
      push = tf.cast(self.compressor.decode(payload), push.dtype)[0]
    delay = self.delay(party)
    self.staleness_sum.assign_add(delay)
    self.staleness_max.assign(tf.maximum(self.staleness_max, delay))
    self.count(delay)
    if self.update == "asgd":
      return push
    gradient = push + self.weight_decay * weights + self.dc_lambda * push * push * (weights - self.previous)
    self.previous.assign(weights)
    return gradient

  def mean_staleness(self) -> float:
    """The pushes' mean staleness so far (0 before any)."""
    return float(self.staleness_sum.numpy()) / max(int(self.iteration.numpy()), 1)
