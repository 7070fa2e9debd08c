"""Tasks: a `TaskSpec` plus one module per task kind (`mtl/tasks/<kind>.py`: loss, stats, finalize,
check_shapes), found by name in `TASK_KINDS` (mtl/tasks/registry.py)."""
from __future__ import annotations

import types

# The built-in kinds register themselves on import; other kinds are imported by name on first use.
from mtl.tasks import binary, classification, depth, edges, lm, semseg  # noqa: F401
from mtl.tasks.base import TaskSpec, select_tasks
from mtl.tasks.masking import masked_mean
from mtl.tasks.registry import TASK_KINDS


def get_kind(kind: str) -> types.ModuleType:
  """The module implementing loss / stats / finalize for a task kind; unknown kinds raise naming the known."""
  return TASK_KINDS.get(kind)


__all__ = ["TASK_KINDS", "TaskSpec", "select_tasks", "get_kind", "masked_mean"]
