"""What a dataset offers (`DatasetInfo`, public) and how its stored records become batches (`DatasetSpec`)."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mtl.tasks.base import TaskSpec

# collate(records, tasks) -> batch: `records` maps each stored feature to a stacked numpy array [B, ...].
Collate = Callable[[dict[str, np.ndarray], tuple[TaskSpec, ...]], dict[str, np.ndarray]]
# transform(record, out_hw, rng) -> record of fixed-shape arrays, applied to each stored record before stacking
# (decoding, geometry); rng is a numpy Generator when augmenting (training) and None otherwise.
Transform = Callable[[dict, tuple[int, int], "np.random.Generator | None"], dict]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Public description of a dataset.

  Attributes:
    name: dataset name, e.g. 'multifashion'.
    input_key: batch key of the model input ('image' or 'features').
    input_shape: shape of one input without the batch axis, e.g. (36, 36, 1).
    tasks: the dataset's tasks.
    splits: split name -> number of examples.
  """
  name: str
  input_key: str
  input_shape: tuple
  tasks: tuple[TaskSpec, ...]
  splits: dict


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Internal: the TFDS builder class of a dataset and the function turning its records into batches.

  `splits` holds the sizes built from the real sources; a dataset built from other files reports its own sizes.
  `transform` (optional) turns each stored record into fixed-shape arrays at `input_shape[:2]` before collating;
  datasets with one can be asked for at another resolution as 'name-HxW' (see `registry.get_spec`).
  """
  name: str
  builder: type
  input_key: str
  input_shape: tuple
  tasks: tuple[TaskSpec, ...]
  splits: dict
  collate: Collate
  transform: Transform | None = None


def image_to_float(images: np.ndarray, channels: int) -> np.ndarray:
  """uint8 [B, H, W] or [B, H, W, C] -> float32 [B, H, W, C] in [0, 1]."""
  x = images.astype(np.float32) * np.float32(1.0 / 255.0)
  return x[..., None] if x.ndim == 3 and channels == 1 and images.ndim == 3 else x


def validation_split(n: int) -> int:
  """Size of the validation part (the last 10%, at least 1) carved out of `n` training examples."""
  if n < 2:
    raise ValueError(f"need at least 2 training examples to carve out a validation split, got {n}")
  return max(1, n // 10)
