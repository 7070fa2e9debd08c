"""Metrics to TensorBoard event files and a JSON-lines log in the workdir (process 0 only)."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import jax


class MetricWriter:
  """Writes `{step, split, wall_time, **scalars}` lines to `<workdir>/metrics.jsonl` and TensorBoard scalars
  under `<workdir>/tensorboard/<split>`."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = {}
    self._workdir = workdir
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)

  def _board(self, split: str):
    if split not in self._tb:
      from tensorboardX import SummaryWriter
      self._tb[split] = SummaryWriter(os.path.join(self._workdir, "tensorboard", split))
    return self._tb[split]

  def write(self, step: int, scalars: Mapping[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    record = {"step": int(step), "split": split, "wall_time": time.time(), **clean}
    with open(self.path, "a") as f:
      f.write(json.dumps({k: (v if not (isinstance(v, float) and not math.isfinite(v)) else str(v))
                          for k, v in record.items()}) + "\n")
    board = self._board(split)
    for k, v in clean.items():
      board.add_scalar(k, v, int(step))

  def flush(self) -> None:
    for board in self._tb.values():
      board.flush()

  def close(self) -> None:
    for board in self._tb.values():
      board.close()
    self._tb = {}


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
  """All records of `<workdir>/metrics.jsonl` (optionally of one split), oldest first."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics log at {path}")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if split is None or r.get("split") == split]
