"""Base class of the simulated Byzantine attacks."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import tensorflow as tf

from aggregathor import ops


class Attack:
  """An omniscient adversary: builds the f_real Byzantine gradients from the honest ones.

  Subclasses set `name`, `reference` and `params` (argument name -> default) and
  implement `_attack(honest, f_real, f_decl, gar, **args)` returning (f_real, d).
  """

  name: ClassVar[str] = ""
  reference: ClassVar[str] = ""
  params: ClassVar[Mapping[str, Any]] = {}

  def __repr__(self) -> str:
    return f"attacks.get({self.name!r})"

  def __call__(self, honest: ops.Gradients, f_real: int, f_decl: int, gar: Any = None,
               **kwargs: Any) -> tf.Tensor:
    """Returns the (f_real, d) Byzantine gradients, given the (n - f_real, d) honest ones.

    `f_decl` is the number of Byzantine workers the rule was told to tolerate;
    `gar` (a rule name or instance) is needed by attacks that search against it.
    """
    matrix, f_real, f_decl, args = self.validate(honest, f_real, f_decl, kwargs)
    if f_real == 0:
      return tf.zeros([0, matrix.shape[1]], matrix.dtype)
    return self._attack(matrix, f_real, f_decl, gar, **args)

  def validate(self, honest: ops.Gradients, f_real: int, f_decl: int,
               kwargs: Mapping[str, Any]) -> tuple[tf.Tensor, int, int, dict[str, Any]]:
    """The honest (n - f_real, d) matrix, f_real, f_decl and the resolved arguments, all checked."""
    matrix = ops.as_matrix(honest, name="honest gradients")
    f_real = ops.check_f(f_real)
    f_decl = ops.check_f(f_decl)
    args = self.resolve_args(kwargs)
    self.check(matrix.shape[0] + f_real, f_real, f_decl, **args)
    return matrix, f_real, f_decl, args

  def resolve_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The attack's arguments with defaults filled in; unknown names raise `ValueError`."""
    unknown = sorted(set(kwargs) - set(self.params))
    if unknown:
      accepted = ", ".join(sorted(self.params)) or "none"
      raise ValueError(f"attack {self.name} got unknown argument(s) {', '.join(unknown)}; accepted: {accepted}")
    return {**self.params, **kwargs}

  def check(self, n: int, f_real: int, f_decl: int, **args: Any) -> None:
    """Raises `ValueError` for arguments or worker counts this attack cannot use."""
    del n, f_real, f_decl, args

  def _attack(self, honest: tf.Tensor, f_real: int, f_decl: int, gar: Any, **args: Any) -> tf.Tensor:
    raise NotImplementedError
