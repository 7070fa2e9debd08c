"""Fashion scenes: dense multi-task scenes of 2-4 Fashion-MNIST items on a 64x64 canvas.

Items are placed at uniformly random positions and given random depths in [0.1, 0.9]; they are painted far to
near (nearer items occlude farther ones) and dimmed with distance (intensity * (1 - 0.5 * depth)), so occlusion
and brightness both cue depth. Stored per scene: the image, the layer map (0 = background, j + 1 = item j
visible), item classes and depths; the loader derives the targets:
  'semseg' int32 [H, W]: 0 = background, Fashion-MNIST class + 1 for items (11 classes); metric mIoU.
  'depth'  float32 [H, W]: depth of the visible item in (0, 1), 1.0 on background; metric abs_err (lower better).
  'edges'  int32 [H, W]: 1 on item boundaries (a 4-neighbour belongs to another layer); metric F1.
Items come from disjoint pools: train/validation from the training images (split 90/10 as in MultiFashion),
test from the test images; each pool is used about once (number of scenes = pool size // 3).
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import compose, sources
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.builders.multifashion import split_pools
from mtl.data.spec import DatasetSpec, image_to_float
from mtl.tasks.base import TaskSpec

SEED = 20261122
CANVAS = 64
MIN_ITEMS, MAX_ITEMS = 2, 4
ITEMS_PER_SCENE = 3  # average; sets the number of scenes per pool.


def make_scenes(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> dict:
  """Scenes drawing items from `pool` (indices into images/labels) without replacement, cycling if needed."""
  num = max(1, len(pool) // ITEMS_PER_SCENE)
  counts = rng.integers(MIN_ITEMS, MAX_ITEMS + 1, size=num)
  need = int(counts.sum())
  order = np.concatenate([rng.permutation(pool) for _ in range(-(-need // len(pool)))])[:need]
  out = {"image": np.zeros((num, CANVAS, CANVAS), np.uint8), "layers": np.zeros((num, CANVAS, CANVAS), np.uint8),
         "classes": np.full((num, MAX_ITEMS), -1, np.int32), "depths": np.zeros((num, MAX_ITEMS), np.float32)}
  start = 0
  for s, k in enumerate(counts):
    idx = order[start:start + k]
    start += k
    pos, depth = compose.sample_scene_layout(rng, int(k), CANVAS)
    out["image"][s], out["layers"][s] = compose.render_scene(images[idx], pos, depth, CANVAS)
    out["classes"][s, :k] = labels[idx]
    out["depths"][s, :k] = depth
  return out


class MtlFashionScenes(ArrayBuilder):
  """source: directory of the Fashion-MNIST IDX files (default: Debian dataset-fashion-mnist)."""
  name = PREFIX + "fashion_scenes"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  FEATURES = {"image": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8, encoding="zlib"),
              "layers": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8, encoding="zlib"),
              "classes": tfds.features.Tensor(shape=(MAX_ITEMS,), dtype=np.int32),
              "depths": tfds.features.Tensor(shape=(MAX_ITEMS,), dtype=np.float32)}

  def _arrays(self):
    rng = np.random.default_rng(SEED)
    tr_x, tr_y = sources.fashion_mnist("train", self._source)
    te_x, te_y = sources.fashion_mnist("test", self._source)
    train_pool, val_pool = split_pools(len(tr_x), rng)
    return {"train": make_scenes(tr_x, tr_y, train_pool, rng),
            "validation": make_scenes(tr_x, tr_y, val_pool, rng),
            "test": make_scenes(te_x, te_y, np.arange(len(te_x)), rng)}


TASKS = (TaskSpec("semseg", "semseg", 11, metric="miou"),
         TaskSpec("depth", "depth", 1, metric="abs_err", higher_is_better=False),
         TaskSpec("edges", "edges", 1, metric="f1"))


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  semseg, depth, edges = compose.dense_targets(records["layers"], records["classes"], records["depths"])
  targets = {"semseg": semseg, "depth": depth, "edges": edges}
  out = {"image": image_to_float(records["image"], 1)}
  for t in tasks:
    out[t.target_key] = targets[t.name]
  return out


SPEC = DatasetSpec(name="fashion_scenes", builder=MtlFashionScenes, input_key="image",
                   input_shape=(CANVAS, CANVAS, 1), tasks=TASKS,
                   splits={"train": 18000, "validation": 2000, "test": 3333}, collate=collate)
