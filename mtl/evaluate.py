"""Per-task evaluation over a data split, and delta-m against single-task baselines."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import jax
import numpy as np

from mtl import tasks as tasks_lib
from mtl.tasks.base import TaskSpec


def pad_batch(batch: Mapping[str, np.ndarray], batch_size: int, tasks: tuple[TaskSpec, ...]) -> dict:
  """Pads a final partial batch to `batch_size` rows; padded rows get mask 0 for every task."""
  n = next(iter(batch.values())).shape[0]
  if n > batch_size:
    raise ValueError(f"batch of {n} rows is larger than the eval batch size {batch_size}")
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    out[k] = np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)]) if n < batch_size else v
  valid = (np.arange(batch_size) < n).astype(np.float32)
  for t in tasks:
    out[t.mask_key] = valid * np.asarray(out.get(t.mask_key, np.ones(batch_size, np.float32)), np.float32)
  return out


def evaluate_stats(stats_fn: Callable[[dict], dict], batches: Iterable[dict], batch_size: int,
                   tasks: tuple[TaskSpec, ...]) -> dict[str, dict[str, float]]:
  """Runs `stats_fn(batch) -> {task: summable stats}` over all batches; returns task -> finalized metrics."""
  totals = None
  for batch in batches:
    stats = jax.device_get(stats_fn(pad_batch(batch, batch_size, tasks)))
    totals = stats if totals is None else jax.tree_util.tree_map(np.add, totals, stats)
  if totals is None:
    raise ValueError("evaluation split yielded no batches")
  return {t.name: tasks_lib.get_kind(t.kind).finalize(totals[t.name]) for t in tasks}


def delta_m(results: Mapping[str, float], baselines: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
  """Average relative change (%) of each task's main metric against its single-task baseline.

  delta_m = 100/T * sum_t s_t (M_t - B_t) / B_t, with s_t = +1 if higher is better else -1 (Maninis et al. 2019).
  Positive means the multi-task model is better on average.
  """
  missing = sorted(set(results) - set(baselines))
  if missing:
    raise ValueError(f"no single-task baseline for task(s) {missing}; baselines exist for {sorted(baselines)}")
  if not results:
    raise ValueError("delta_m needs at least one task")
  total = 0.0
  for name, value in results.items():
    base = float(baselines[name])
    if base == 0:
      raise ValueError(f"baseline of task {name!r} is 0; relative change is undefined")
    sign = 1.0 if higher_is_better[name] else -1.0
    total += sign * (float(value) - base) / abs(base)
  return 100.0 * total / len(results)


def main_metrics(per_task: Mapping[str, Mapping[str, float]], tasks: tuple[TaskSpec, ...]) -> dict[str, float]:
  """task -> value of its main metric (`TaskSpec.metric`)."""
  return {t.name: float(per_task[t.name][t.metric]) for t in tasks}


def format_table(per_task: Mapping[str, Mapping[str, float]]) -> str:
  """A plain-text table: one row per task, one column per metric."""
  cols = sorted({k for m in per_task.values() for k in m})
  width = max([len(n) for n in per_task] + [4])
  lines = ["task".ljust(width) + "  " + "  ".join(c.rjust(14) for c in cols)]
  for name, m in per_task.items():
    lines.append(name.ljust(width) + "  " + "  ".join(
        (f"{m[c]:14.4f}" if c in m else " " * 14) for c in cols))
  return "\n".join(lines)


