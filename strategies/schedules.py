"""Learning-rate schedules by name, each with its arguments' defaults (AggregaThor's `--learning-rate`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import keras

# name -> (arguments with their defaults, builder from the complete arguments).
SCHEDULES: dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], Any]]] = {}


def _schedule(name: str, **params: Any):
  def decorate(builder):
    SCHEDULES[name] = (params, builder)
    return builder
  return decorate


@_schedule("fixed", **{"initial-rate": 0.05})
def _fixed(args):
  return args["initial-rate"]


@_schedule("polynomial", **{"initial-rate": 0.05, "decay-steps": 1000, "end-rate": 0.0001, "power": 1.0,
                            "cycle": False})
def _polynomial(args):
  return keras.optimizers.schedules.PolynomialDecay(args["initial-rate"], args["decay-steps"], args["end-rate"],
                                                    args["power"], args["cycle"])


@_schedule("exponential", **{"initial-rate": 0.05, "decay-steps": 1000, "decay-rate": 0.96, "staircase": False})
def _exponential(args):
  return keras.optimizers.schedules.ExponentialDecay(args["initial-rate"], args["decay-steps"], args["decay-rate"],
                                                     args["staircase"])


@_schedule("inverse-time", **{"initial-rate": 0.05, "decay-steps": 1000, "decay-rate": 0.5, "staircase": False})
def _inverse_time(args):
  return keras.optimizers.schedules.InverseTimeDecay(args["initial-rate"], args["decay-steps"], args["decay-rate"],
                                                     args["staircase"])


@_schedule("cosine", **{"initial-rate": 0.05, "decay-steps": 1000, "alpha": 0.0})
def _cosine(args):
  return keras.optimizers.schedules.CosineDecay(args["initial-rate"], args["decay-steps"], args["alpha"])


def names() -> list[str]:
  """The schedules' names."""
  return sorted(SCHEDULES)


def params(name: str) -> dict[str, Any]:
  """The arguments of schedule `name`, with their defaults."""
  return dict(_lookup(name)[0])


def build(name: str, args: Mapping[str, Any] | None = None) -> float | keras.optimizers.schedules.LearningRateSchedule:
  """The learning rate of schedule `name`: a float for `fixed`, else a Keras schedule of the step."""
  defaults, builder = _lookup(name)
  complete = {**defaults, **(args or {})}
  unknown = sorted(set(complete) - set(defaults))
  if unknown:
    raise ValueError(f"learning-rate schedule {name} got unknown argument(s) {', '.join(unknown)}; accepted: "
                     f"{', '.join(sorted(defaults))}")
  if not complete["initial-rate"] > 0:
    raise ValueError(f"--learning-rate-args initial-rate must be > 0, got {complete['initial-rate']}")
  return builder(complete)


def _lookup(name: str):
  if name not in SCHEDULES:
    raise ValueError(f"unknown learning-rate schedule {name!r}; known: {', '.join(names())}")
  return SCHEDULES[name]
