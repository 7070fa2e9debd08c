"""MultiFashion: two Fashion-MNIST items on a 36x36 canvas (MultiMNIST convention); tasks 'left' and 'right'.

Train/validation come from the 60k training images, split once by a fixed permutation (validation = last 10%),
each item paired with another item of the same part (a fixed-point-free permutation) so no item crosses parts;
test pairs the 10k test images the same way. Deterministic: all randomness comes from `SEED`.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import compose, sources
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.spec import DatasetSpec, image_to_float, validation_split
from mtl.tasks.base import TaskSpec

SEED = 20180101
CANVAS = 36


def split_pools(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the train and validation parts (the last 10% of a fixed permutation of range(n))."""
  perm = rng.permutation(n)
  n_val = validation_split(n)
  return np.sort(perm[:-n_val]), np.sort(perm[-n_val:])


def pair_split(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> dict:
  partner = pool[compose.pair_indices(len(pool), rng)]
  return {"image": compose.overlay_pair(images[pool], images[partner], CANVAS),
          "left": labels[pool].astype(np.int32), "right": labels[partner].astype(np.int32)}


class MtlMultifashion(ArrayBuilder):
  """source: directory of the Fashion-MNIST IDX files (default: Debian dataset-fashion-mnist)."""
  name = PREFIX + "multifashion"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  FEATURES = {"image": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8, encoding="bytes"),
              "left": tfds.features.Scalar(dtype=np.int32), "right": tfds.features.Scalar(dtype=np.int32)}

  def _arrays(self):
    rng = np.random.default_rng(SEED)
    tr_x, tr_y = sources.fashion_mnist("train", self._source)
    te_x, te_y = sources.fashion_mnist("test", self._source)
    train_pool, val_pool = split_pools(len(tr_x), rng)
    return {"train": pair_split(tr_x, tr_y, train_pool, rng),
            "validation": pair_split(tr_x, tr_y, val_pool, rng),
            "test": pair_split(te_x, te_y, np.arange(len(te_x)), rng)}


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  out = {"image": image_to_float(records["image"], 1)}
  for t in tasks:
    out[t.target_key] = records[t.name].astype(np.int32)
  return out


SPEC = DatasetSpec(
    name="multifashion", builder=MtlMultifashion, input_key="image", input_shape=(CANVAS, CANVAS, 1),
    tasks=(TaskSpec("left", "classification", 10), TaskSpec("right", "classification", 10)),
    splits={"train": 54000, "validation": 6000, "test": 10000}, collate=collate)
