"""Restore-and-evaluate a workdir, and single-task baselines for delta-m."""
from __future__ import annotations

import json
import os

from absl import logging

from mtl.train import loop


def load_and_evaluate(workdir: str, split: str = "test", step: int | None = None,
                      max_batches: int | None = None) -> tuple[dict, loop.Experiment]:
  """Restores a workdir's checkpoint (latest by default) and evaluates `split` (its first `max_batches` batches
  when given)."""
  exp, state, restored = loop.restore_experiment(workdir, step)
  logging.info("restored step %d", restored)
  return loop.evaluate_split(exp, state, split, max_batches=max_batches), exp


def read_baselines(spec: str, split: str) -> dict[str, float]:
  """task -> main metric of its single-task baseline."""
  if spec.endswith(".json") and os.path.exists(spec):
    with open(spec) as f:
      return {k: float(v) for k, v in json.load(f).items()}
  out = {}
  for part in spec.split(","):
    if "=" not in part:
      raise ValueError(f"--baselines entry {part!r} is not task=WORKDIR")
    task, workdir = part.split("=", 1)
    metrics, exp = load_and_evaluate(workdir, split)
    if task not in metrics:
      raise ValueError(f"baseline run {workdir} has no task {task!r}; it has {sorted(metrics)}")
    spec_t = next(t for t in exp.tasks if t.name == task)
    out[task] = metrics[task][spec_t.metric]
  return out
