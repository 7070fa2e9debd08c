"""Batched, sharded, checkpointable loaders: `tfds.data_source` records through a `grain.MapDataset` pipeline.

Pipeline (all index arithmetic, lazy): range(N) -> shuffle(seed) (reshuffled every epoch) -> repeat(num_epochs)
-> batch(batch_size * shard_count) -> keep this host's rows -> read those records -> collate. Every host thus
sees its rows of the same global batches whatever the number of hosts, and reads only its own records.
The loader state is {'next_batch': k} (global batches consumed): JSON-serialisable, exact resume, the same
with or without worker processes.
"""
from __future__ import annotations

from typing import Any, Sequence

import grain
from absl import flags
import numpy as np

from mtl.data.build import data_sources
from mtl.data.registry import get_spec
from mtl.tasks.base import TaskSpec, select_tasks

_MAX_SEED = 2**32


def _stack(records: Sequence[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}


class _ReadBatch:
  """Global batch of indices -> this host's collated batch (a picklable callable, for worker processes).

  With a per-record `transform` the batch is (positions in the example stream, indices): record i of the stream
  is augmented with numpy Generator([seed, position]) (None when not augmenting), so augmentation differs across
  epochs and is reproduced exactly on resume.
  """

  def __init__(self, source, collate, tasks: tuple[TaskSpec, ...], shard_index: int, shard_count: int,
               transform=None, out_hw: tuple[int, int] | None = None, augment_seed: int | None = None):
    self.source, self.collate, self.tasks = source, collate, tasks
    self.shard_index, self.shard_count = shard_index, shard_count
    self.transform, self.out_hw, self.augment_seed = transform, out_hw, augment_seed

  def __call__(self, batch) -> dict[str, np.ndarray]:
    positions, indices = batch if isinstance(batch, tuple) else (None, batch)
    indices = np.asarray(indices)
    rows = np.array_split(np.arange(len(indices)), self.shard_count)[self.shard_index]
    take = [int(indices[r]) for r in rows] or [int(indices[0])]  # read one record for the shapes of an empty batch.
    records = self.source.__getitems__(take) if hasattr(self.source, "__getitems__") else [
        self.source[i] for i in take]
    if self.transform is not None:
      pos = [int(positions[r]) for r in rows] or [int(positions[0])]
      records = [self.transform(rec, self.out_hw, None if self.augment_seed is None else
                                np.random.default_rng([self.augment_seed, p])) for rec, p in zip(records, pos)]
    batch = self.collate(_stack(records), self.tasks)
    if not len(rows):
      batch = {k: v[:0] for k, v in batch.items()}
    return batch


def _with_position(position: int, index):
  return np.int64(position), index


class Loader:
  """Iterator over batches (dicts of numpy arrays) with `get_state()` / `set_state(state)` for exact resume.

  The state is {'next_batch': k} (global batches consumed), JSON-serialisable and independent of the number of
  hosts' worker processes and prefetching: resuming rebuilds the grain pipeline from batch k.
  """

  def __init__(self, batches: grain.MapDataset, read_options: grain.ReadOptions, worker_count: int,
               num_batches: int | None):
    self._batches, self._read_options, self._worker_count = batches, read_options, worker_count
    self.num_batches = num_batches  # batches in total; None when repeating forever.
    self._position = 0
    self._iter = None

  def _start(self):
    ds = self._batches[self._position:] if self._position else self._batches
    it_ds = ds.to_iter_dataset(self._read_options)
    if self._worker_count > 0:
      if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags; outside absl.app use defaults.
        flags.FLAGS.mark_as_parsed()
      it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._worker_count))
    return iter(it_ds)

  def __iter__(self) -> "Loader":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self.num_batches is not None and self._position >= self.num_batches:
      raise StopIteration
    if self._iter is None:
      self._iter = self._start()
    batch = next(self._iter)
    self._position += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"next_batch": int(self._position)}

  def set_state(self, state: dict[str, Any]) -> None:
    k = state.get("next_batch") if isinstance(state, dict) else None
    if not isinstance(k, int) or k < 0 or (self.num_batches is not None and k > self.num_batches):
      raise ValueError(f"bad loader state {state!r}: expected {{'next_batch': k}} with 0 <= k <= "
                       f"{self.num_batches if self.num_batches is not None else 'inf'}")
    self.close()
    self._position = k

  def close(self) -> None:
    """Stops prefetching (and worker processes); iteration may continue afterwards from the same position."""
    close = getattr(self._iter, "close", None)
    if close is not None:
      close()
    self._iter = None


def make_loader(name: str, split: str, *, batch_size: int, seed: int = 0, shuffle: bool = True,
                num_epochs: int | None = None, drop_remainder: bool = True, data_dir: str | None = None,
                shard_index: int = 0, shard_count: int = 1, tasks: Sequence[str] | None = None,
                worker_count: int = 0, augment: bool | None = None) -> Loader:
  """Batches of `split` of dataset `name` for host `shard_index` of `shard_count`.

  Each host gets `batch_size` rows (its share of a global batch of batch_size * shard_count rows; a final partial
  batch when drop_remainder=False is divided as evenly as possible, possibly leaving a host 0 rows).
  Batches hold the input (float32, images in [0, 1]) under the dataset's `input_key`, each task's targets under
  `spec.target_key`, and 'mask/<task>' float32 [B] for datasets where not every example has every label.
  num_epochs=None repeats forever. `tasks`: names of the tasks to keep (default all). `worker_count` > 0 reads
  in that many worker processes (grain mp_prefetch); the batches and states are the same as with 0.
  `augment` (datasets with a per-record transform only; default: split == 'train') applies the dataset's random
  augmentation, seeded by `seed` and the example's position in the stream.
  Builds the dataset first if it is not built yet (see `prepare`).
  """
  spec = get_spec(name)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, shard_count={shard_count}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be None (forever) or >= 1, got {num_epochs}")
  if worker_count < 0:
    raise ValueError(f"worker_count must be >= 0, got {worker_count}")
  if not 0 <= seed < _MAX_SEED:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  selected = select_tasks(spec.tasks, tuple(tasks) if tasks else None)
  sources = data_sources(name, data_dir)
  if split not in sources:
    raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {sorted(sources)}")
  source = sources[split]
  n = len(source)
  global_batch = batch_size * shard_count
  if drop_remainder and n < global_batch:
    raise ValueError(f"split {split!r} of {name!r} has {n} examples, fewer than one global batch of {global_batch}")
  ds = grain.MapDataset.range(n)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  if augment is None:
    augment = split == "train" and spec.transform is not None
  elif augment and spec.transform is None:
    raise ValueError(f"dataset {name!r} has no augmentation (augment=True)")
  if spec.transform is not None:
    ds = ds.map_with_index(_with_position)
  ds = ds.batch(global_batch, drop_remainder=drop_remainder)
  ds = ds.map(_ReadBatch(source, spec.collate, selected, shard_index, shard_count, spec.transform,
                         tuple(spec.input_shape[:2]), seed if augment else None))
  num_batches = None if num_epochs is None else len(ds)
  return Loader(ds, grain.ReadOptions(num_threads=2, prefetch_buffer_size=4), worker_count, num_batches)
