"""Tasks: a `TaskSpec` plus one module per task kind with `loss`, `stats`, `finalize`, `check_shapes`."""
from __future__ import annotations

import types

from mtl.tasks import binary, classification, depth, edges, lm, regression, semseg
from mtl.tasks.base import KINDS, TaskSpec, select_tasks
from mtl.tasks.masking import masked_mean

_KIND_MODULES = {"classification": classification, "binary": binary, "semseg": semseg, "depth": depth,
                 "edges": edges, "lm": lm, "regression": regression}
assert set(_KIND_MODULES) == set(KINDS)


def get_kind(kind: str) -> types.ModuleType:
  """The module implementing loss / stats / finalize for a task kind."""
  try:
    return _KIND_MODULES[kind]
  except KeyError:
    raise ValueError(f"unknown task kind {kind!r}; known kinds: {sorted(_KIND_MODULES)}") from None


__all__ = ["TaskSpec", "select_tasks", "get_kind", "masked_mean", "KINDS"]
