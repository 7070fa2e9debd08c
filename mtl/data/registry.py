"""Dataset names -> specs; `get_info`."""
from __future__ import annotations

import os

from mtl.data.builders import cifar100_mtl, fashion_scenes, mmoe_synthetic, multi_fashion_mnist, multifashion, yeast
from mtl.data.spec import DatasetSpec

_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    multifashion.SPEC, multi_fashion_mnist.SPEC, yeast.SPEC, cifar100_mtl.SPEC, fashion_scenes.SPEC,
    *mmoe_synthetic.SPECS)}


def names() -> tuple[str, ...]:
  return tuple(_SPECS)


def get_spec(name: str) -> DatasetSpec:
  try:
    return _SPECS[name]
  except KeyError:
    raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(_SPECS)}") from None


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else $MTL_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("MTL_DATA_DIR") or "~/tensorflow_datasets")
