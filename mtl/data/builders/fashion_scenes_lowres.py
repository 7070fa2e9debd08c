"""Fashion scenes at a lower resolution (e.g. 'fashion_scenes32': 32x32), read from the same TFDS build.

A cheaper dense benchmark for 2-core CPUs: each scene's image is average-pooled by `factor` (64 / resolution)
and its layer map is subsampled (nearest: pixel (i, j) of the small map is pixel (f i + f // 2, f j + f // 2)
of the full one), then the targets are derived from the small layer map as at full resolution
(mtl/data/compose.py:dense_targets), so semseg, depth and edges stay consistent with one another (edges are
1-pixel boundaries of the small map).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mtl.data import compose
from mtl.data.builders import fashion_scenes
from mtl.data.spec import DatasetSpec, image_to_float
from mtl.tasks.base import TaskSpec

RESOLUTIONS = (32, 16)


def downsample(records: dict, factor: int) -> dict:
  """records with 'image' and 'layers' uint8 [B, H, W] -> the same at [B, H / factor, W / factor]."""
  img, lay = records["image"], records["layers"]
  b, h, w = img.shape
  if factor < 1 or h % factor or w % factor:
    raise ValueError(f"fashion scenes: {h}x{w} scenes cannot be downsampled by {factor}")
  pooled = img.astype(np.float32).reshape(b, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
  out = dict(records)
  out["image"] = np.round(pooled).astype(np.uint8)
  out["layers"] = lay[:, factor // 2::factor, factor // 2::factor]
  return out


def collate(records: dict, tasks: tuple[TaskSpec, ...], factor: int) -> dict:
  small = downsample(records, factor)
  semseg, depth, edges = compose.dense_targets(small["layers"], small["classes"], small["depths"])
  targets = {"semseg": semseg, "depth": depth, "edges": edges}
  out = {"image": image_to_float(small["image"], 1)}
  for t in tasks:
    out[t.target_key] = targets[t.name]
  return out


def spec(resolution: int) -> DatasetSpec:
  """'fashion_scenes<resolution>' (same builder, splits and tasks as fashion_scenes)."""
  if resolution not in RESOLUTIONS:
    raise ValueError(f"fashion scenes resolution must be one of {RESOLUTIONS} (or 64: 'fashion_scenes'), got "
                     f"{resolution}")
  factor = fashion_scenes.CANVAS // resolution
  return dataclasses.replace(fashion_scenes.SPEC, name=f"fashion_scenes{resolution}",
                             input_shape=(resolution, resolution, 1),
                             collate=functools.partial(collate, factor=factor))


SPECS = tuple(spec(r) for r in RESOLUTIONS)
