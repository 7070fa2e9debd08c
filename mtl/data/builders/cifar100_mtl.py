"""CIFAR100-MTL: CIFAR-100 as 20 tasks, one per coarse class, each a 5-way choice among its fine classes.

Read from the upstream binary files (cifar-100-binary/{train,test}.bin; record = coarse label byte, fine label
byte, 3072 image bytes as R, G, B planes of 32x32) or the python-pickle archive (cifar-100-python/{train,test,meta};
same pixels as 'data' [N, 3072], labels as 'coarse_labels' / 'fine_labels'); mtl.data.sources.cifar100_dir finds
either from one setting. Train = first 45,000 training records, validation = last
5,000, test = the 10,000 test records. Each example is labelled for one task only: batches carry
'mask/<task>' float32 [B] (1 where the example's coarse class is that task) and label 0 where unlabelled.
Task label = rank of the fine class among the (sorted) fine classes of its coarse class.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import sources
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.spec import DatasetSpec, image_to_float, validation_split
from mtl.tasks.base import TaskSpec

COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man_made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non_insect_invertebrates", "people", "reptiles", "small_mammals", "trees", "vehicles_1",
    "vehicles_2")
# Coarse class of each fine class 0..99 (CIFAR-100 meta data).
FINE_TO_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13], np.int32)
assert np.all(np.bincount(FINE_TO_COARSE, minlength=20) == 5)
# Rank of each fine class within its coarse class (0..4).
FINE_RANK = np.array([int(np.sum(FINE_TO_COARSE[:f] == FINE_TO_COARSE[f])) for f in range(100)], np.int32)


def check_labels(coarse: np.ndarray, fine: np.ndarray, what: str) -> None:
  bad = np.nonzero(FINE_TO_COARSE[fine] != coarse)[0]
  if len(bad):
    i = int(bad[0])
    raise ValueError(f"{what}: record {i} has fine label {int(fine[i])} with coarse label {int(coarse[i])}, but "
                     f"CIFAR-100 puts fine class {int(fine[i])} in coarse class {int(FINE_TO_COARSE[fine[i]])} "
                     f"({len(bad)} inconsistent records)")


class MtlCifar100Mtl(ArrayBuilder):
  """source: directory with train.bin / test.bin or the python pickles train / test / meta, or a folder holding
  cifar-100-binary or cifar-100-python (default: $MTL_CIFAR100_DIR or <data_dir>/downloads/manual)."""
  name = PREFIX + "cifar100_mtl"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  FEATURES = {"image": tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8, encoding="bytes"),
              "coarse": tfds.features.Scalar(dtype=np.int32), "fine": tfds.features.Scalar(dtype=np.int32)}

  def _arrays(self):
    src = sources.cifar100_dir(self._source, self.data_dir_root)
    out = {}
    for split in ("train", "test"):
      x, c, f = sources.cifar100(split, src)
      check_labels(c, f, f"{src}/{split}")
      out[split] = {"image": x, "coarse": c, "fine": f}
    n = len(out["train"]["image"])
    n_train = n - validation_split(n)
    tr = out.pop("train")
    out["train"] = {k: v[:n_train] for k, v in tr.items()}
    out["validation"] = {k: v[n_train:] for k, v in tr.items()}
    return out


TASKS = tuple(TaskSpec(c, "classification", 5) for c in COARSE_NAMES)
_TASK_INDEX = {t.name: i for i, t in enumerate(TASKS)}


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  coarse = records["coarse"].astype(np.int32)
  rank = FINE_RANK[records["fine"]]
  out = {"image": image_to_float(records["image"], 3)}
  for t in tasks:
    on = coarse == _TASK_INDEX[t.name]
    out[t.target_key] = np.where(on, rank, 0).astype(np.int32)
    out[t.mask_key] = on.astype(np.float32)
  return out


SPEC = DatasetSpec(name="cifar100_mtl", builder=MtlCifar100Mtl, input_key="image", input_shape=(32, 32, 3),
                   tasks=TASKS, splits={"train": 45000, "validation": 5000, "test": 10000}, collate=collate)
