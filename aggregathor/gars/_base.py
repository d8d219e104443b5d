"""Base classes of gradient aggregation rules (GARs) and pre-aggregations."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import tensorflow as tf

from aggregathor import ops


class Rule:
  """A gradient aggregation rule: combines n worker gradients, up to f Byzantine, into one.

  Subclasses set `name`, `reference` and `params` (argument name -> default), and
  implement `_check` and either `_aggregate` or, for rules that keep a subset of
  the workers, `_aggregate_and_select`. `get()` returns a fresh instance, so a
  stateful rule keeps its state per instance.
  """

  name: ClassVar[str] = ""
  reference: ClassVar[str] = ""
  params: ClassVar[Mapping[str, Any]] = {}
  # True for rules that output a subset of the workers and report which.
  selects: ClassVar[bool] = False
  # True for rules meant to tolerate Byzantine inputs, hence held to NaN/Inf safety.
  robust: ClassVar[bool] = True
  # True for rules that commute with a positive scaling of their input: aggregate(c·X) = c·aggregate(X) for
  # c > 0, with the same selection (exactly so for a power of two c, barring overflow). A caller whose rows
  # are c times what it holds (a strategy undoing the loss's 1/n) may then scale the (d,) output instead of
  # the (n, d) input. False is always safe.
  scale_equivariant: ClassVar[bool] = False
  is_pre_aggregation: ClassVar[bool] = False

  def __repr__(self) -> str:
    return f"gars.get({self.name!r})"

  # Public API

  def check(self, n: int, f: int, **kwargs: Any) -> None:
    """Raises `ValueError` naming the violated condition on n, f or the arguments."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise ValueError(f"{self.name} needs n >= 1 gradients, got n={n!r}")
    f = ops.check_f(f, n)
    self._check(n, f, **self.resolve_args(kwargs))

  def upper_bound(self, n: int, f: int, d: int) -> float | None:
    """Bound on the honest gradients' std/norm ratio under which the paper proves the rule safe, if it gives one."""
    del n, f, d
    return None

  def aggregate(self, gradients: ops.Gradients, f: int, **kwargs: Any) -> tf.Tensor:
    """Aggregates (n, d) gradients, or a list of n (d,) gradients, into one (d,) gradient."""
    return self.aggregate_and_select(gradients, f, **kwargs)[0]

  def aggregate_and_select(self, gradients: ops.Gradients, f: int,
                           **kwargs: Any) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Like `aggregate`, also returning an (n,) 0/1 mask of the workers the rule kept (None if it keeps no subset)."""
    matrix = ops.as_matrix(gradients)
    n = matrix.shape[0]
    f = ops.check_f(f, n)
    args = self.resolve_args(kwargs)
    self._check(n, f, **args)
    return self._aggregate_and_select(matrix, f, **args)

  def build(self, d: int, dtype: tf.DType = tf.float32) -> None:
    """Creates the rule's state for gradients of d coordinates, if it keeps any; idempotent.

    Stateful rules create it on their first call otherwise; call it first to
    restore the state from a checkpoint (see `variables`).
    """
    del d, dtype

  def variables(self) -> dict[str, tf.Variable]:
    """The state the rule carries between steps, by name, to checkpoint; empty for stateless rules."""
    return {}

  def resolve_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's arguments with defaults filled in; unknown names raise `ValueError`."""
    unknown = sorted(set(kwargs) - set(self.params))
    if unknown:
      accepted = ", ".join(sorted(self.params)) or "none"
      raise ValueError(f"{self.name} got unknown argument(s) {', '.join(unknown)}; accepted: {accepted}")
    return {**self.params, **kwargs}

  # To implement

  def _check(self, n: int, f: int, **args: Any) -> None:
    del n, f, args

  def _aggregate(self, gradients: tf.Tensor, f: int, **args: Any) -> tf.Tensor:
    return self._aggregate_and_select(gradients, f, **args)[0]

  def _aggregate_and_select(self, gradients: tf.Tensor, f: int,
                            **args: Any) -> tuple[tf.Tensor, tf.Tensor | None]:
    return self._aggregate(gradients, f, **args), None


class PreAggregation(Rule):
  """A transformation of the (n, d) gradients run before a rule (e.g. `nnm>krum`).

  Subclasses implement `_transform` and, when they change the number of rows,
  `output_count`. `keeps_rows` says whether row i of the output still stands for
  worker i, so that a following rule's selection can be reported per worker.
  """

  is_pre_aggregation: ClassVar[bool] = True
  keeps_rows: ClassVar[bool] = True

  def output_count(self, n: int, f: int, **args: Any) -> int:
    del f, args
    return n

  def transform(self, gradients: ops.Gradients, f: int, **kwargs: Any) -> tf.Tensor:
    """Returns the transformed (n', d) gradients."""
    matrix = ops.as_matrix(gradients)
    f = ops.check_f(f, matrix.shape[0])
    args = self.resolve_args(kwargs)
    self._check(matrix.shape[0], f, **args)
    return self._transform(matrix, f, **args)

  def _transform(self, gradients: tf.Tensor, f: int, **args: Any) -> tf.Tensor:
    raise NotImplementedError

  def _aggregate(self, gradients: tf.Tensor, f: int, **args: Any) -> tf.Tensor:
    # Alone, a pre-aggregation followed by the mean.
    return tf.reduce_mean(self._transform(gradients, f, **args), axis=0)


def check_positive_int(rule: str, name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
  """Validates an integer argument of a rule, with a message that names both."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{rule} expects {name} as an int, got {value!r}")
  if value < minimum or (maximum is not None and value > maximum):
    bound = f"{minimum} <= {name}" + (f" <= {maximum}" if maximum is not None else "")
    raise ValueError(f"{rule} needs {bound}, got {name}={value}")
  return value


def check_positive_float(rule: str, name: str, value: Any, allow_zero: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"{rule} expects {name} as a number, got {value!r}")
  if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
    raise ValueError(f"{rule} needs a finite {name} {'>=' if allow_zero else '>'} 0, got {name}={value}")
  return float(value)
