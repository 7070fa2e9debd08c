"""Task specification shared by data, models, losses and evaluation.

A task is described by a `TaskSpec`; its loss and metrics live in a module per task kind
(`mtl/tasks/classification.py`, ...), looked up through `mtl.tasks.get_kind(spec.kind)`.

Batch convention (numpy or jax arrays, leading batch axis B):
  batch[input_key]          model input, e.g. 'image' float32 [B, H, W, C] or 'features' [B, D]
  batch[spec.target_key]    targets of the task, e.g. int32 [B] class ids
  batch['mask/' + name]     optional float32 [B]: 1 where the sample has a label for the task
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a task predicts and how it is scored.

  Attributes:
    name: unique task name, e.g. 'left'.
    kind: a registered task kind (`mtl.tasks.TASK_KINDS`), e.g. 'classification'.
    num_outputs: output channels of the head (classes for classification, 1 for binary / depth).
    target_key: key of the targets in a batch (defaults to `name`).
    metric: name of the main metric used for delta-m, e.g. 'accuracy'.
    higher_is_better: whether a larger `metric` is better (False for errors).
  """
  name: str
  kind: str
  num_outputs: int
  target_key: str = ""
  metric: str = "accuracy"
  higher_is_better: bool = True

  def __post_init__(self):
    if not self.name or "/" in self.name:
      raise ValueError(f"task name must be non-empty and contain no '/': {self.name!r}")
    from mtl.tasks.registry import TASK_KINDS
    try:
      TASK_KINDS.get(self.kind)
    except ValueError as e:
      raise ValueError(f"task {self.name!r}: {e}") from None
    if self.num_outputs < 1:
      raise ValueError(f"task {self.name!r}: num_outputs must be >= 1, got {self.num_outputs}")
    if not self.target_key:
      object.__setattr__(self, "target_key", self.name)

  @property
  def mask_key(self) -> str:
    return "mask/" + self.name


def select_tasks(available: tuple[TaskSpec, ...], names: tuple[str, ...] | list[str] | None
                 ) -> tuple[TaskSpec, ...]:
  """Returns the specs named in `names` (all when None), in that order; unknown names raise."""
  if not names:
    return tuple(available)
  by_name = {t.name: t for t in available}
  unknown = [n for n in names if n not in by_name]
  if unknown:
    raise ValueError(f"unknown task name(s) {unknown}; this dataset has tasks {sorted(by_name)}")
  if len(set(names)) != len(names):
    raise ValueError(f"task names repeat: {list(names)}")
  return tuple(by_name[n] for n in names)
