"""Name -> method factory; get_method validates the name and the keyword arguments."""
from __future__ import annotations

import inspect
from typing import Callable

from mtl.optim.base import Method

_FACTORIES: dict[str, Callable[..., Method]] = {}


def register(name: str):
  def deco(factory):
    if name in _FACTORIES:
      raise ValueError(f"method {name!r} registered twice")
    _FACTORIES[name] = factory
    return factory
  return deco


def known_methods() -> tuple[str, ...]:
  return tuple(sorted(_FACTORIES))


def get_method(name: str, num_tasks: int, **kwargs) -> Method:
  """Builds method `name` for `num_tasks` tasks; kwargs are the method's options (see its factory)."""
  if name not in _FACTORIES:
    raise ValueError(f"unknown multi-task method {name!r}; known: {', '.join(known_methods())}")
  if not isinstance(num_tasks, int) or num_tasks < 1:
    raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
  factory = _FACTORIES[name]
  params = inspect.signature(factory).parameters
  unknown = sorted(k for k in kwargs if k not in params or k == "num_tasks")
  if unknown:
    options = [p for p in params if p != "num_tasks"]
    raise ValueError(f"method {name!r}: unknown option(s) {unknown}; options: {options}")
  return factory(num_tasks, **kwargs)
