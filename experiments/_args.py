"""Typing of `key:value` command-line arguments against a table of defaults.

Shared by `--experiment-args`, `--aggregator-args`, `--attack-args`, ...: each
value is converted to the type of its default, so that `batch-size:64` gives the
int 64 and a typo gives an error that names the key and the expected type.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
# Keys whose default is None accept this (any case) to mean "back to None".
NONE = "none"


def split_pairs(pairs: Iterable[str], what: str = "arguments") -> dict[str, str]:
  """`["k:v", ...]` -> `{"k": "v"}`, split at the FIRST colon so that values may hold colons."""
  if isinstance(pairs, str):
    raise ValueError(f"{what}: expected a list of 'key:value' strings, got the single string {pairs!r}")
  result: dict[str, str] = {}
  for pair in pairs:
    if not isinstance(pair, str):
      raise ValueError(f"{what}: expected 'key:value' strings, got {pair!r}")
    key, colon, value = pair.partition(":")
    key = key.strip()
    if not colon or not key:
      raise ValueError(f"{what}: expected 'key:value' (e.g. batch-size:32), got {pair!r}")
    if key in result:
      raise ValueError(f"{what}: {key!r} is given twice ({result[key]!r} and {value!r})")
    result[key] = value
  return result


def _type_name(kind: type) -> str:
  return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(
      kind, kind.__name__)


def convert(key: str, value: Any, default: Any, kind: type | None = None, what: str = "arguments") -> Any:
  """`value` as the type of `default` (or `kind` when given); strings are parsed.

  A None default takes strings unless `kind` says otherwise; for it, "none" gives None.
  """
  if kind is None:
    kind = str if default is None else type(default)
  if default is None and (value is None or (isinstance(value, str) and value.strip().lower() == NONE)):
    return None
  expected = f"{what}: {key} expects {_type_name(kind)}"
  if isinstance(value, str) and kind is not str:
    text = value.strip()
    if kind is bool:
      if text.lower() in _TRUE:
        return True
      if text.lower() in _FALSE:
        return False
      raise ValueError(f"{expected} ({'/'.join(_TRUE)} or {'/'.join(_FALSE)}), got {value!r}")
    if kind in (int, float):
      try:
        return kind(text)
      except ValueError:
        raise ValueError(f"{expected}, got {value!r}") from None
    raise ValueError(f"{expected}, which cannot be given as text; got {value!r}")
  # Already typed (from Python): accept the type itself, and ints where floats are expected.
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
    return value
  raise ValueError(f"{expected}, got {value!r} ({type(value).__name__})")


def parse_args(params: Mapping[str, Any], raw: Mapping[str, Any] | Iterable[str],
               types: Mapping[str, type] | None = None, what: str = "arguments") -> dict[str, Any]:
  """Checks and types the given arguments against `params` (name -> default).

  `raw` is a dict or a list of "key:value" strings. Returns only the keys that
  were given, converted to their default's type (`types` overrides the type of a
  key, e.g. a float whose default is None). An unknown key raises `ValueError`
  listing the accepted ones.
  """
  types = dict(types or {})
  given = dict(raw) if isinstance(raw, Mapping) else split_pairs(raw, what)
  unknown = sorted(set(given) - set(params))
  if unknown:
    accepted = ", ".join(sorted(params)) or "none"
    raise ValueError(f"{what}: unknown argument(s) {', '.join(unknown)}; accepted: {accepted}")
  return {key: convert(key, value, params[key], types.get(key), what) for key, value in given.items()}


def typed_pairs(params: Mapping[str, Any], pairs: Iterable[str], what: str) -> dict[str, Any]:
  """Command-line `key:value` pairs typed by `params`' defaults; keys whose default is None are read as literals."""
  raw = split_pairs(pairs, what)
  types = {key: _literal_type(value) for key, value in raw.items() if params.get(key, 0) is None}
  return parse_args(params, raw, types, what)


def _literal_type(text: str) -> type:
  if re.fullmatch(r"[+-]?\d+", text.strip()):
    return int
  try:
    float(text)
    return float
  except ValueError:
    return bool if text.strip().lower() in ("true", "false") else str
