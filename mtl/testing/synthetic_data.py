"""A tiny in-memory two-task dataset registered as 'synthetic', so loop tests need no data packages."""
from __future__ import annotations

import numpy as np

from mtl.data.registry import DATASETS
from mtl.data.spec import DatasetInfo
from mtl.tasks.base import TaskSpec

TASKS = (TaskSpec("even", "classification", 3), TaskSpec("odd", "classification", 3))
INPUT_SHAPE = (8, 8, 1)
SPLITS = {"train": 256, "validation": 64, "test": 72}


def get_info(name: str) -> DatasetInfo:
  if name != "synthetic":
    raise ValueError(f"unknown dataset {name!r}; known: ['synthetic']")
  return DatasetInfo("synthetic", "image", INPUT_SHAPE, TASKS, dict(SPLITS))


def _examples(split: str):
  rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[split])
  n = SPLITS[split]
  even = rng.integers(0, 3, n)
  odd = rng.integers(0, 3, n)
  x = rng.normal(0, 0.3, (n,) + INPUT_SHAPE).astype(np.float32)
  x[np.arange(n), even * 2, 0, 0] += 2.0  # learnable signal for each task
  x[np.arange(n), odd * 2 + 1, 7, 0] += 2.0
  return {"image": x, "even": even.astype(np.int32), "odd": odd.astype(np.int32)}


class Loader:
  """Epoch-shuffled batches; state = (position) so resume is exact.

  Host `shard_index` of `shard_count` yields rows [i*b, (i+1)*b) of the global batch of b*shard_count rows that a
  single host would read, so any number of hosts sees the same global batches (and reads only its own rows).
  """

  def __init__(self, split, batch_size, seed, shuffle, num_epochs, drop_remainder, shard_index, shard_count, tasks):
    self.data = _examples(split)
    self.index = np.arange(SPLITS[split])
    self.shard_index, self.shard_count = shard_index, shard_count
    self.batch_size, self.seed, self.shuffle = batch_size * shard_count, seed, shuffle
    self.num_epochs, self.drop_remainder = num_epochs, drop_remainder
    self.tasks = tasks
    self.position = 0

  def _order(self, epoch):
    if not self.shuffle:
      return self.index
    return np.random.default_rng([self.seed, epoch]).permutation(self.index)

  def __iter__(self):
    return self

  def __next__(self):
    per_epoch = len(self.index)
    epoch, offset = divmod(self.position, per_epoch)
    if self.num_epochs is not None and epoch >= self.num_epochs:
      raise StopIteration
    order = self._order(epoch)
    take = order[offset:offset + self.batch_size]
    if len(take) < self.batch_size and self.drop_remainder:
      if self.num_epochs is not None and epoch + 1 >= self.num_epochs:
        raise StopIteration
      self.position = (epoch + 1) * per_epoch
      return next(self)
    self.position += len(take)
    keep = ["image"] + list(self.tasks or ("even", "odd"))
    rows = len(take) // self.shard_count
    take = take[self.shard_index * rows:(self.shard_index + 1) * rows]
    return {k: self.data[k][take] for k in keep}

  def get_state(self):
    return {"position": int(self.position)}

  def set_state(self, state):
    self.position = int(state["position"])


def make_loader(name, split, *, batch_size, seed=0, shuffle=True, num_epochs=None, drop_remainder=True,
                data_dir=None, shard_index=0, shard_count=1, tasks=None, worker_count=0):
  get_info(name)
  return Loader(split, batch_size, seed, shuffle, num_epochs, drop_remainder, shard_index, shard_count, tasks)


class SyntheticDataset:
  """Registry provider of 'synthetic' (TASKS and INPUT_SHAPE are read at call time, so tests may change them)."""

  def info(self, name: str, data_dir: str | None = None) -> DatasetInfo:
    return get_info(name)

  def loader(self, name: str, split: str, **kwargs):
    return make_loader(name, split, **kwargs)


DATASETS.register("synthetic", SyntheticDataset())
