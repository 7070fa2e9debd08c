"""Building datasets (offline) and opening their splits as `tfds.data_source`s."""
from __future__ import annotations

import os
import time

import tensorflow_datasets as tfds
from absl import logging

from mtl.data.registry import get_spec, resolve_data_dir
from mtl.data.spec import DatasetInfo


def _builder(name: str, data_dir: str | None, source: str | None = None) -> tfds.core.DatasetBuilder:
  return get_spec(name).builder(data_dir=resolve_data_dir(data_dir), source=source, file_format="array_record")


def is_prepared(name: str, data_dir: str | None = None) -> bool:
  """True when a complete build of the current version exists (tfds renames the directory only when done)."""
  b = _builder(name, data_dir)
  return os.path.exists(os.path.join(b.data_dir, "dataset_info.json"))


def prepare(name: str, data_dir: str | None = None, *, source: str | None = None) -> None:
  """Builds dataset `name` into `data_dir` ($MTL_DATA_DIR or ~/tensorflow_datasets) unless already built.

  Fully offline. `source` overrides where the raw files are read from (meaning per dataset: a directory of the
  Fashion-MNIST IDX files, a yeast csv path, the cifar-100-binary directory, ...); the default locations and
  environment variables are listed in `mtl.data.sources`. Missing files raise `MissingDataError` saying what to
  install. tfds writes into a temporary `incomplete.*` directory and renames it when finished, so an interrupted
  build is never taken for a complete one.
  """
  if is_prepared(name, data_dir):
    return
  b = _builder(name, data_dir, source)
  t0 = time.time()
  try:
    b.download_and_prepare(file_format="array_record")
  except OSError:
    if is_prepared(name, data_dir):  # another process (host) finished the same build first.
      return
    raise
  logging.info("built %s into %s in %.1f s", name, b.data_dir, time.time() - t0)


def data_sources(name: str, data_dir: str | None = None) -> dict:
  """split -> random-access source of decoded records (dicts of numpy arrays); builds the dataset if needed."""
  prepare(name, data_dir)
  spec = get_spec(name)
  return tfds.data_source(spec.builder.name, data_dir=resolve_data_dir(data_dir), download=False)


def get_info(name: str, data_dir: str | None = None) -> DatasetInfo:
  """Description of dataset `name`. Split sizes are read from a build in `data_dir` when one exists, otherwise
  they are those of the build from the real sources. Unknown name -> ValueError listing the known ones."""
  spec = get_spec(name)
  splits = dict(spec.splits)
  try:
    if is_prepared(name, data_dir):
      b = _builder(name, data_dir)
      splits = {k: int(v.num_examples) for k, v in b.info.splits.items()}
  except OSError:
    pass
  return DatasetInfo(name=spec.name, input_key=spec.input_key, input_shape=tuple(spec.input_shape),
                     tasks=tuple(spec.tasks), splits=splits)

