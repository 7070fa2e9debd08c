"""Yeast (MULAN): 103 gene-expression/phylogenetic features, 14 binary functional classes as 14 tasks.

river's yeast.csv.gz holds the 2,417 genes of OpenML 40597; the first 1,500 rows form train (first 1,350) and
validation (last 150), the last 917 rows the test split (the MULAN train/test sizes). Features are standardised
with the mean/std of the train rows. Targets: int32 {0, 1} [B] per task 'class_1' .. 'class_14'.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import sources
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.spec import DatasetSpec, validation_split
from mtl.tasks.base import TaskSpec

NUM_FEATURES, NUM_TASKS = 103, 14
TRAIN_FRACTION = 1500 / 2417


class MtlYeast(ArrayBuilder):
  """source: path of yeast.csv(.gz) (default: river's)."""
  name = PREFIX + "yeast"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  FEATURES = {"features": tfds.features.Tensor(shape=(NUM_FEATURES,), dtype=np.float32),
              "labels": tfds.features.Tensor(shape=(NUM_TASKS,), dtype=np.int32)}

  def _arrays(self):
    x, y = sources.yeast(self._source)
    n_trainval = int(round(len(x) * TRAIN_FRACTION))
    n_train = n_trainval - validation_split(n_trainval)
    mean = x[:n_train].mean(0)
    std = np.maximum(x[:n_train].std(0), 1e-6)
    x = ((x - mean) / std).astype(np.float32)
    parts = {"train": slice(0, n_train), "validation": slice(n_train, n_trainval), "test": slice(n_trainval, None)}
    return {k: {"features": x[s], "labels": y[s]} for k, s in parts.items()}


TASKS = tuple(TaskSpec(f"class_{i + 1}", "binary", 1) for i in range(NUM_TASKS))
_TASK_INDEX = {t.name: i for i, t in enumerate(TASKS)}


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  out = {"features": records["features"].astype(np.float32)}
  for t in tasks:
    out[t.target_key] = records["labels"][:, _TASK_INDEX[t.name]].astype(np.int32)
  return out


SPEC = DatasetSpec(name="yeast", builder=MtlYeast, input_key="features", input_shape=(NUM_FEATURES,), tasks=TASKS,
                   splits={"train": 1350, "validation": 150, "test": 917}, collate=collate)
