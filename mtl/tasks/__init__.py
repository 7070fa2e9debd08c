"""Tasks: a `TaskSpec` plus one module per task kind with `loss`, `stats`, `finalize`, `check_shapes`."""
from __future__ import annotations

import types

from mtl.tasks import binary, boundary, classification, depth, edges, human_parts, lm, normals, saliency, semseg
from mtl.tasks.base import KINDS, TaskSpec, select_tasks
from mtl.tasks.masking import masked_mean

_KIND_MODULES = {"classification": classification, "binary": binary, "semseg": semseg, "depth": depth,
                 "edges": edges, "lm": lm, "normals": normals, "saliency": saliency,
                 "human_parts": human_parts, "boundary": boundary, "boundary_nyud": boundary.NYUD}
assert set(_KIND_MODULES) == set(KINDS)


def get_kind(kind: str) -> types.ModuleType:
  """The module implementing loss / stats / finalize for a task kind."""
  try:
    return _KIND_MODULES[kind]
  except KeyError:
    raise ValueError(f"unknown task kind {kind!r}; known kinds: {sorted(_KIND_MODULES)}") from None


__all__ = ["TaskSpec", "select_tasks", "get_kind", "masked_mean", "KINDS"]
