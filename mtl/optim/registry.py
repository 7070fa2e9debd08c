"""Multi-task methods by name: `METHODS` (a `mtl.registry.Registry` of factories `f(num_tasks, **options)`);
`get_method` validates the name and the options."""
from __future__ import annotations

import inspect
from typing import Callable

from mtl.optim.base import Method
from mtl.registry import Registry

METHODS: Registry[Callable[..., Method]] = Registry("multi-task method", package="mtl.optim")


def register(name: str):
  """Decorator registering a method factory `f(num_tasks, **options) -> Method` as `name`."""
  return METHODS.register(name)


def known_methods() -> tuple[str, ...]:
  return METHODS.names()


def get_method(name: str, num_tasks: int, **kwargs) -> Method:
  """Builds method `name` for `num_tasks` tasks; kwargs are the method's options (see its factory)."""
  factory = METHODS.get(name)
  if not isinstance(num_tasks, int) or num_tasks < 1:
    raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
  params = inspect.signature(factory).parameters
  unknown = sorted(k for k in kwargs if k not in params or k == "num_tasks")
  if unknown:
    options = [p for p in params if p != "num_tasks"]
    raise ValueError(f"method {name!r}: unknown option(s) {unknown}; options: {options}")
  return factory(num_tasks, **kwargs)
