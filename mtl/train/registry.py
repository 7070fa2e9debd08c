"""Train-step variants by name: `TRAIN_STEPS` (config.train_step).

An entry is `build(exp) -> step | ScheduledStep`, where `exp` is the `mtl.train.loop.Experiment` and `step(state,
batch) -> (state, {'scalars': ..., 'stats': ...})` is unjitted (the loop jits it with the state's shardings).
Variants assemble their loss with `mtl.train.step.forward` / `task_losses_and_stats` and end with
`mtl.train.step.finish_step`, so every variant keeps batch statistics, sown auxiliary losses and the same
metrics. 'standard' lives in mtl/train/step.py; 'sandwich' (controllable MTL) in mtl/control/sandwich_step.py;
'nested_draft' (LM speculative drafts) in mtl/nested_draft.py; 'teacher_distill' (distillation from a frozen
checkpoint) in mtl/train/teacher_distill.py.
"""
from __future__ import annotations

from typing import Any, Callable

from mtl.registry import Registry

TRAIN_STEPS: Registry[Callable[[Any], Any]] = Registry("train step variant")
