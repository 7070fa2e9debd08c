"""Pure numpy composition of multi-item images (MultiMNIST convention) and dense multi-object scenes.

Pixel values are uint8 in [0, 255]; all randomness comes from an explicit `np.random.Generator`.
"""
from __future__ import annotations

import numpy as np

ITEM = 28  # side of a Fashion-MNIST / MNIST item in pixels.
# Scenes: a pixel belongs to an item where the item's intensity exceeds this value (uint8).
ITEM_THRESHOLD = 10
BACKGROUND_DEPTH = 1.0
# Scenes: items are dimmed with distance: intensity * (1 - FOG * depth) (an "aerial perspective" depth cue).
FOG = 0.5


def overlay_pair(left: np.ndarray, right: np.ndarray, canvas: int = 36) -> np.ndarray:
  """Two items [N, 28, 28] -> [N, canvas, canvas]: `left` at the top-left corner, `right` at the bottom-right one,
  overlapping pixels take the maximum (Sener & Koltun 2018, MultiMNIST)."""
  if left.shape != right.shape or left.ndim != 3 or left.shape[1:] != (ITEM, ITEM):
    raise ValueError(f"expected two item stacks [N, {ITEM}, {ITEM}], got {left.shape} and {right.shape}")
  if canvas < ITEM:
    raise ValueError(f"canvas {canvas} is smaller than an item ({ITEM})")
  out = np.zeros((left.shape[0], canvas, canvas), np.uint8)
  off = canvas - ITEM
  out[:, :ITEM, :ITEM] = left
  out[:, off:, off:] = np.maximum(out[:, off:, off:], right)
  return out


def pair_indices(n: int, rng: np.random.Generator) -> np.ndarray:
  """A permutation of range(n) without fixed points (each item is paired with a different one), int64 [n]."""
  if n < 2:
    raise ValueError(f"need at least 2 items to pair, got {n}")
  perm = rng.permutation(n)
  fixed = np.nonzero(perm == np.arange(n))[0]
  for i in fixed:  # swap each remaining fixed point with its neighbour (a handful per permutation).
    if perm[i] == i:
      j = (i + 1) % n
      perm[i], perm[j] = perm[j], perm[i]
  return perm


def sample_scene_layout(rng: np.random.Generator, num_items: int, canvas: int,
                        depth_range: tuple[float, float] = (0.1, 0.9)) -> tuple[np.ndarray, np.ndarray]:
  """Top-left positions int32 [k, 2] and depths float32 [k] sorted far -> near (drawing order)."""
  pos = rng.integers(0, canvas - ITEM + 1, size=(num_items, 2)).astype(np.int32)
  depth = np.sort(rng.uniform(*depth_range, size=num_items))[::-1].astype(np.float32)
  return pos, depth


def render_scene(items: np.ndarray, positions: np.ndarray, depths: np.ndarray, canvas: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Paints items [k, 28, 28] in order (later = nearer, occludes earlier ones).

  Returns the image uint8 [canvas, canvas] (item intensity * (1 - FOG * depth)) and the layer map uint8
  [canvas, canvas]: 0 for background, j + 1 where item j is the visible one.
  """
  if items.ndim != 3 or items.shape[1:] != (ITEM, ITEM) or len(positions) != len(items) != len(depths):
    raise ValueError(f"expected items [k, {ITEM}, {ITEM}] with k positions and depths, got {items.shape}, "
                     f"{np.shape(positions)}, {np.shape(depths)}")
  image = np.zeros((canvas, canvas), np.uint8)
  layers = np.zeros((canvas, canvas), np.uint8)
  for j, (item, (y, x), z) in enumerate(zip(items, positions, depths)):
    if not (0 <= y <= canvas - ITEM and 0 <= x <= canvas - ITEM):
      raise ValueError(f"item {j} at {(int(y), int(x))} does not fit in a {canvas}x{canvas} canvas")
    mask = item > ITEM_THRESHOLD
    shaded = np.round(item.astype(np.float32) * (1.0 - FOG * float(z))).astype(np.uint8)
    image[y:y + ITEM, x:x + ITEM][mask] = shaded[mask]
    layers[y:y + ITEM, x:x + ITEM][mask] = j + 1
  return image, layers


def dense_targets(layers: np.ndarray, classes: np.ndarray, depths: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Targets of a batch of scenes from layer maps.

  Args:
    layers: uint8 [B, H, W], 0 = background, j + 1 = item j.
    classes: int [B, K] class id of item j (padding entries are never referenced).
    depths: float [B, K] depth of item j in (0, 1).
  Returns:
    semseg int32 [B, H, W] (0 = background, class + 1 for items: 11 classes),
    depth float32 [B, H, W] (item depth, BACKGROUND_DEPTH = 1.0 on background),
    edges int32 [B, H, W] (1 where a 4-neighbour inside the image belongs to a different layer).
  """
  if layers.ndim != 3 or classes.ndim != 2 or depths.shape != classes.shape or classes.shape[0] != layers.shape[0]:
    raise ValueError(f"expected layers [B, H, W], classes and depths [B, K], got {layers.shape}, {classes.shape}, "
                     f"{depths.shape}")
  lay = layers.astype(np.int64)
  b = np.arange(lay.shape[0])[:, None, None]
  item = np.maximum(lay - 1, 0)
  on = lay > 0
  semseg = np.where(on, classes[b, item] + 1, 0).astype(np.int32)
  depth = np.where(on, depths[b, item], BACKGROUND_DEPTH).astype(np.float32)
  edges = np.zeros(lay.shape, bool)
  dy = lay[:, 1:, :] != lay[:, :-1, :]
  dx = lay[:, :, 1:] != lay[:, :, :-1]
  edges[:, 1:, :] |= dy
  edges[:, :-1, :] |= dy
  edges[:, :, 1:] |= dx
  edges[:, :, :-1] |= dx
  return semseg, depth, edges.astype(np.int32)
