"""Offline multi-task datasets: TFDS builders (array_record) read with `tfds.data_source` + grain.

  from mtl.data import get_info, make_loader, prepare, MissingDataError
  info = get_info('multifashion')                    # DatasetInfo(name, input_key, input_shape, tasks, splits)
  prepare('multifashion')                            # builds into $MTL_DATA_DIR or ~/tensorflow_datasets
  it = make_loader('multifashion', 'train', batch_size=128, seed=0)
  batch = next(it); state = it.get_state(); it.set_state(state)

Datasets: see `names()`.
"""
from mtl.data.errors import MissingDataError
from mtl.data.pipeline import Loader, make_loader
from mtl.data.build import get_info, is_prepared, prepare
from mtl.data.registry import names
from mtl.data.spec import DatasetInfo

__all__ = ["DatasetInfo", "Loader", "MissingDataError", "get_info", "is_prepared", "make_loader", "names",
           "prepare"]
