"""Writes small NYUDv2 / PASCAL-Context multi-task folders in the real on-disk formats (PNG / JPEG via Pillow,
.npy depth, MATLAB .mat label maps and PASCAL-Part structs via scipy), so tests build the real loaders.

Scenes are a few rectangles over a gradient, so every task has learnable, consistent labels.
"""
from __future__ import annotations

import os

import numpy as np

NYUD_SPLITS = {"train": 4, "val": 3}
PASCAL_SPLITS = {"train": 4, "val": 3}


def _save(array: np.ndarray, path: str, **kwargs) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)


def _scene(rng: np.random.Generator, hw: tuple[int, int], num_classes: int):
  """(image uint8 [H, W, 3], class map int [H, W] in 0..num_classes-1, normals in [-1, 1] [H, W, 3], depth [H, W])."""
  h, w = hw
  labels = np.zeros(hw, np.int64)
  depth = np.tile(np.linspace(1.0, 5.0, h)[:, None], (1, w))
  normals = np.zeros(hw + (3,))
  normals[..., 1] = 1.0  # floor-like background.
  for k in range(3):
    y0, x0 = rng.integers(0, h - h // 3), rng.integers(0, w - w // 3)
    y1, x1 = y0 + rng.integers(h // 6, h // 3 + 1), x0 + rng.integers(w // 6, w // 3 + 1)
    c = int(rng.integers(1, num_classes))
    labels[y0:y1, x0:x1] = c
    depth[y0:y1, x0:x1] = 0.5 + k
    n = rng.normal(size=3)
    normals[y0:y1, x0:x1] = n / np.linalg.norm(n)
  image = np.stack([labels * (200 // num_classes) + 20, (depth * 40).astype(np.int64),
                    ((normals[..., 0] + 1) * 100).astype(np.int64)], -1)
  image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
  return image, labels, normals, depth


def _normals_png(normals: np.ndarray) -> np.ndarray:
  return np.clip(np.round((normals + 1) * 127.5), 0, 255).astype(np.uint8)


def write_nyud(root: str, hw: tuple[int, int] = (24, 32), splits: dict | None = None, seed: int = 0) -> dict:
  """NYUDv2 multi-task layout under root; returns split -> ids."""
  rng = np.random.default_rng(seed)
  ids = {}
  for split, n in (splits or NYUD_SPLITS).items():
    ids[split] = [f"{split}_{i:04d}" for i in range(n)]
    os.makedirs(os.path.join(root, "gt_sets"), exist_ok=True)
    with open(os.path.join(root, "gt_sets", f"{split}.txt"), "w") as f:
      f.write("\n".join(ids[split]) + "\n")
    for i in ids[split]:
      image, labels, normals, depth = _scene(rng, hw, 41)
      labels[0, :] = 0  # an unlabelled row (stored 0 = ignored).
      _save(image, os.path.join(root, "images", f"{i}.png"))
      _save(labels.astype(np.uint8), os.path.join(root, "segmentation", f"{i}.png"))
      _save(_normals_png(normals), os.path.join(root, "normals", f"{i}.png"))
      edge = np.zeros(hw, np.uint8)
      edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
      edge[:-1] |= labels[:-1] != labels[1:]
      _save(edge * 255, os.path.join(root, "edge", f"{i}.png"))
      os.makedirs(os.path.join(root, "depth"), exist_ok=True)
      np.save(os.path.join(root, "depth", f"{i}.npy"), depth.astype(np.float32))
  return ids


def _parts_struct(labels: np.ndarray, person_class: int, with_person: bool, rng: np.random.Generator) -> dict:
  """A PASCAL-Part 'anno' struct: one non-person object and (optionally) a person with head / torso / leg parts."""
  hw = labels.shape
  obj_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
  part_dtype = [("part_name", "O"), ("mask", "O")]
  objs = [("car", 7, (labels == 2).astype(np.uint8), np.zeros((0, 0)))]
  if with_person:
    mask = np.zeros(hw, np.uint8)
    y0, x0 = int(rng.integers(0, hw[0] // 2)), int(rng.integers(0, hw[1] // 2))
    mask[y0:y0 + hw[0] // 2, x0:x0 + hw[1] // 3] = 1
    rows = np.nonzero(mask.any(1))[0]
    parts = np.zeros((1, 3), dtype=part_dtype)
    for j, (name, (a, b)) in enumerate((("head", (0, 1)), ("torso", (1, 2)), ("llleg", (2, 3)))):
      pm = np.zeros(hw, np.uint8)
      sel = rows[len(rows) * a // 3:len(rows) * b // 3]
      pm[sel] = mask[sel]
      parts[0, j] = (name, pm)
    objs.append(("person", person_class, mask, parts))
  arr = np.zeros((1, len(objs)), dtype=obj_dtype)
  for j, o in enumerate(objs):
    arr[0, j] = (o[0], np.array([[o[1]]], np.uint8), o[2], o[3])
  return {"imname": "x", "objects": arr}


def write_pascal_context(root: str, hw: tuple[int, int] = (30, 26), splits: dict | None = None, seed: int = 0
                         ) -> dict:
  """PASCAL-Context multi-task layout under root; every other image has a person; returns split -> ids."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  ids = {}
  k = 0
  for split, n in (splits or PASCAL_SPLITS).items():
    ids[split] = [f"2008_{k + i:06d}" for i in range(n)]
    k += n
    os.makedirs(os.path.join(root, "ImageSets", "Context"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "Context", f"{split}.txt"), "w") as f:
      f.write("\n".join(ids[split]) + "\n")
    for j, i in enumerate(ids[split]):
      image, labels, normals, _ = _scene(rng, hw, 21)
      _save(image, os.path.join(root, "JPEGImages", f"{i}.jpg"), quality=95)
      seg = labels.astype(np.uint8)
      seg[-1, :] = 255  # void border.
      sub = "VOC12" if j % 2 == 0 else "pascal-context"
      from PIL import Image  # pylint: disable=g-import-not-at-top
      os.makedirs(os.path.join(root, "semseg", sub), exist_ok=True)
      pal = Image.fromarray(seg, mode="P")
      pal.putpalette(list(rng.integers(0, 256, 768).astype(np.uint8)))
      pal.save(os.path.join(root, "semseg", sub, f"{i}.png"))
      context = np.where(labels > 0, np.array([18, 72, 397, 440, 5, 2])[labels % 6], 0).astype(np.uint16)
      os.makedirs(os.path.join(root, "pascal-context", "trainval"), exist_ok=True)
      scipy.io.savemat(os.path.join(root, "pascal-context", "trainval", f"{i}.mat"), {"LabelMap": context})
      os.makedirs(os.path.join(root, "human_parts"), exist_ok=True)
      scipy.io.savemat(os.path.join(root, "human_parts", f"{i}.mat"),
                       {"anno": _parts_struct(labels, 15, j % 2 == 0, rng)})
      _save(_normals_png(normals), os.path.join(root, "normals_distill", f"{i}.png"))
      _save(((labels > 0) * 255).astype(np.uint8), os.path.join(root, "sal_distill", f"{i}.png"))
  return ids


if __name__ == "__main__":
  # python -m mtl.testing.dense_files DATA_DIR: both folders under DATA_DIR/downloads/manual (for smoke runs).
  import sys
  base = os.path.join(sys.argv[1], "downloads", "manual")
  write_nyud(os.path.join(base, "NYUDv2"), hw=(48, 64), splits={"train": 16, "val": 8})
  write_pascal_context(os.path.join(base, "PASCALContext"), hw=(50, 40), splits={"train": 16, "val": 8})
  print(f"wrote NYUDv2 (16 train / 8 val, 48x64) and PASCALContext (16 / 8, 50x40) under {base}")
