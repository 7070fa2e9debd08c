"""Offline multi-task datasets: TFDS builders (array_record) read with `tfds.data_source` + grain, and text
datasets generated from installed packages (mtl/data/text).

  from mtl.data import get_info, make_loader, prepare, MissingDataError
  info = get_info('multifashion')                    # DatasetInfo(name, input_key, input_shape, tasks, splits)
  prepare('multifashion')                            # builds into $MTL_DATA_DIR or ~/tensorflow_datasets
  it = make_loader('multifashion', 'train', batch_size=128, seed=0)
  batch = next(it); state = it.get_state(); it.set_state(state)

Datasets: see `names()`; text: 'gcide_text', 'mqar', 'mqar-L-K-V'.
"""
from mtl.data import build as _build
from mtl.data import pipeline as _pipeline
from mtl.data.build import is_prepared, prepare
from mtl.data.errors import MissingDataError
from mtl.data.pipeline import Loader
from mtl.data.registry import names
from mtl.data.spec import DatasetInfo


def _is_text(name: str) -> bool:
  return name == "gcide_text" or name == "mqar" or name.startswith("mqar-")


def get_info(name: str, data_dir: str | None = None):
  """DatasetInfo of an image/tabular dataset or a text dataset (same fields)."""
  if _is_text(name):
    from mtl.data.text import datasets as text
    return text.get_info(name)
  return _build.get_info(name, data_dir)


def make_loader(name: str, split: str, **kwargs):
  """Batches of a dataset (see mtl/data/pipeline.py and mtl/data/text/datasets.py for the arguments)."""
  if _is_text(name):
    from mtl.data.text import datasets as text
    return text.make_loader(name, split, **kwargs)
  return _pipeline.make_loader(name, split, **kwargs)


__all__ = ["DatasetInfo", "Loader", "MissingDataError", "get_info", "is_prepared", "make_loader", "names",
           "prepare"]
