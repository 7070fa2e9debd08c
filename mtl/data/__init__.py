"""Offline multi-task datasets, found by name in one registry (`DATASETS`, mtl/data/registry.py): TFDS builders
(array_record) read with `tfds.data_source` + grain, text datasets generated from installed packages
(mtl/data/text), and whatever a fork registers.

  from mtl.data import get_info, make_loader, prepare, MissingDataError
  info = get_info('multifashion')                    # DatasetInfo(name, input_key, input_shape, tasks, splits)
  prepare('multifashion')                            # builds into $MTL_DATA_DIR or ~/tensorflow_datasets
  it = make_loader('multifashion', 'train', batch_size=128, seed=0)
  batch = next(it); state = it.get_state(); it.set_state(state)

Datasets: `DATASETS.names()`; text: 'gcide_text', 'mqar', 'mqar-L-K-V'; tests: 'synthetic'.
"""
from __future__ import annotations

from typing import Any

from mtl.data.build import is_prepared, prepare
from mtl.data.errors import MissingDataError
from mtl.data.pipeline import Loader
from mtl.data.registry import DATASETS, names
from mtl.data.spec import DatasetInfo


def get_info(name: str, data_dir: str | None = None) -> DatasetInfo:
  """DatasetInfo of a registered dataset; unknown names raise listing the known ones."""
  return DATASETS.get(name).info(name, data_dir)


def make_loader(name: str, split: str, **kwargs: Any):
  """Batches of a dataset split: an iterator with get_state/set_state (keyword arguments: batch_size, seed,
  shuffle, num_epochs, drop_remainder, data_dir, shard_index, shard_count, tasks, worker_count)."""
  return DATASETS.get(name).loader(name, split, **kwargs)


__all__ = ["DATASETS", "DatasetInfo", "Loader", "MissingDataError", "get_info", "is_prepared", "make_loader",
           "names", "prepare"]
