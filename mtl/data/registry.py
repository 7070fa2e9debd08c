"""Datasets by name: `DATASETS`, a `mtl.registry.Registry` of `Dataset` providers.

A provider answers `info(name, data_dir) -> DatasetInfo` and `loader(name, split, **kwargs)` (the keyword
arguments of `mtl.data.make_loader`). The offline TFDS datasets (one `DatasetSpec` each, built from installed
packages) are registered here; the text datasets in `mtl/data/text/datasets.py`; the in-memory synthetic
dataset in `mtl/testing/synthetic_data.py`. A new dataset registers its provider in its own file:

  DATASETS.register("my_dataset", MyProvider())      # or family=True for parameterised 'my_dataset-<args>'
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Protocol

from mtl.data.builders import (cifar100_mtl, fashion_scenes, fashion_scenes_lowres, mmoe_synthetic, mmoe_unbalanced,
                               multi_fashion_mnist, multifashion, nyud, pascal_context, yeast)
from mtl.data.spec import DatasetInfo, DatasetSpec
from mtl.registry import Registry


class Dataset(Protocol):
  """What the training loop needs from a dataset (see module docstring)."""

  def info(self, name: str, data_dir: str | None = None) -> DatasetInfo: ...

  def loader(self, name: str, split: str, **kwargs: Any) -> Any: ...


DATASETS: Registry[Dataset] = Registry("dataset")


class TfdsDataset:
  """A dataset built offline into TFDS array_record files and read with tfds.data_source + grain."""

  def __init__(self, spec: DatasetSpec):
    self.spec = spec

  def info(self, name: str, data_dir: str | None = None) -> DatasetInfo:
    from mtl.data import build
    return build.get_info(name, data_dir)

  def loader(self, name: str, split: str, **kwargs: Any) -> Any:
    from mtl.data import pipeline
    return pipeline.make_loader(name, split, **kwargs)


_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    multifashion.SPEC, multi_fashion_mnist.SPEC, yeast.SPEC, cifar100_mtl.SPEC, fashion_scenes.SPEC, nyud.SPEC,
    pascal_context.SPEC, *mmoe_synthetic.SPECS, *mmoe_unbalanced.SPECS, *fashion_scenes_lowres.SPECS)}
for _spec in _SPECS.values():
  # Datasets with a per-record transform (the dense benchmarks) are families: 'nyud-64x80' is nyud at 64 x 80.
  DATASETS.register(_spec.name, TfdsDataset(_spec), family=_spec.transform is not None)
_RESOLUTION = re.compile(r"^(?P<base>[^-]+)-(?P<h>[0-9]+)x(?P<w>[0-9]+)$")


def names() -> tuple[str, ...]:
  """The TFDS datasets that `mtl.data.prepare` can build (every registered dataset: `DATASETS.names()`)."""
  return tuple(_SPECS)


def get_spec(name: str) -> DatasetSpec:
  """Spec of dataset `name`; 'name-HxW' (datasets with a per-record transform, e.g. 'nyud-64x80') is the same
  stored dataset resized / cropped to H x W by its pipeline."""
  m = _RESOLUTION.match(name)
  base = m.group("base") if m else name
  if base not in _SPECS:
    raise ValueError(f"unknown dataset {name!r}; datasets built with TFDS: {sorted(_SPECS)} (dense ones also as "
                     f"'name-HxW')")
  spec = _SPECS[base]
  if not m:
    return spec
  if spec.transform is None:
    dense = sorted(n for n, s in _SPECS.items() if s.transform is not None)
    raise ValueError(f"dataset {base!r} has a fixed resolution; 'name-HxW' works only for {dense}")
  h, w = int(m.group("h")), int(m.group("w"))
  if h < 1 or w < 1:
    raise ValueError(f"dataset {name!r}: resolution must be positive")
  return dataclasses.replace(spec, name=name, input_shape=(h, w) + tuple(spec.input_shape[2:]))


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else $MTL_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("MTL_DATA_DIR") or "~/tensorflow_datasets")
