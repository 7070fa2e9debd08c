"""Dataset names -> specs; `get_info`."""
from __future__ import annotations

import os

import dataclasses
import re

from mtl.data.builders import (cifar100_mtl, fashion_scenes, multi_fashion_mnist, multifashion, nyud, pascal_context,
                               yeast)
from mtl.data.spec import DatasetSpec

_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    multifashion.SPEC, multi_fashion_mnist.SPEC, yeast.SPEC, cifar100_mtl.SPEC, fashion_scenes.SPEC, nyud.SPEC,
    pascal_context.SPEC)}
_RESOLUTION = re.compile(r"^(?P<base>[^@]+)@(?P<h>[0-9]+)x(?P<w>[0-9]+)$")


def names() -> tuple[str, ...]:
  return tuple(_SPECS)


def get_spec(name: str) -> DatasetSpec:
  """Spec of dataset `name`; 'name@HxW' (datasets with a per-record transform, e.g. 'nyud@64x80') is the same
  stored dataset resized / cropped to H x W by its pipeline."""
  m = _RESOLUTION.match(name)
  base = m.group("base") if m else name
  if base not in _SPECS:
    raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(_SPECS)} (dense ones also as 'name@HxW')")
  spec = _SPECS[base]
  if not m:
    return spec
  if spec.transform is None:
    dense = sorted(n for n, s in _SPECS.items() if s.transform is not None)
    raise ValueError(f"dataset {base!r} has a fixed resolution; 'name@HxW' works only for {dense}")
  h, w = int(m.group("h")), int(m.group("w"))
  if h < 1 or w < 1:
    raise ValueError(f"dataset {name!r}: resolution must be positive")
  return dataclasses.replace(spec, name=name, input_shape=(h, w) + tuple(spec.input_shape[2:]))


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else $MTL_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("MTL_DATA_DIR") or "~/tensorflow_datasets")
