"""Reading and checking the files of the dense multi-task benchmarks (NYUDv2, PASCAL-Context), and the geometry
shared by their pipelines: random scale / crop / flip for training, fit-and-pad for evaluation.

Images and label maps are decoded with Pillow, .mat files with scipy.io.loadmat, depth with numpy. Every reader
raises `MalformedDataError` naming the file and what was expected.

Label conventions after `augment` / `fit_and_pad` (what the task kinds in mtl/tasks expect):
  integer maps (semseg, human parts, saliency, boundaries): int32 [H, W], -1 = ignored (padding, 'void' labels);
  depth: float32 [H, W], -1 on padding; normals: float32 [H, W, 3], zero vectors = invalid.
"""
from __future__ import annotations

import io
import os

import numpy as np

from mtl.data.errors import MissingDataError


class MalformedDataError(ValueError):
  """A source file exists but does not have the expected format, shape or values; the message names it."""


def require_file(path: str, what: str) -> str:
  if not os.path.isfile(path):
    raise MissingDataError(f"missing {what}: {path}")
  return path


def read_split_list(path: str) -> list[str]:
  """Image ids, one per line (blank lines skipped)."""
  require_file(path, "split list (one image id per line)")
  with open(path) as f:
    ids = [line.strip() for line in f if line.strip()]
  if not ids:
    raise MalformedDataError(f"{path}: split list is empty (expected one image id per line)")
  return ids


def read_bytes(path: str, what: str) -> bytes:
  with open(require_file(path, what), "rb") as f:
    return f.read()


def decode_image(data: bytes, what: str, mode: str | None = None) -> np.ndarray:
  """PNG / JPEG bytes -> uint8 array ([H, W] for 'L'/'P'/'I' modes, [H, W, 3] for 'RGB'); `mode` converts first."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      if mode is not None and im.mode != mode:
        im = im.convert(mode)
      return np.asarray(im)
  except Exception as e:  # Pillow raises several types for corrupt files.
    raise MalformedDataError(f"{what}: cannot decode the image ({e})") from e


def encode_png(array: np.ndarray) -> bytes:
  """uint8 [H, W] or [H, W, 3] -> PNG bytes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
  return buf.getvalue()


def check_shape(array: np.ndarray, expected: tuple, what: str) -> np.ndarray:
  """`expected` may hold None for any size."""
  if array.ndim != len(expected) or any(e is not None and a != e for a, e in zip(array.shape, expected)):
    shown = tuple("*" if e is None else e for e in expected)
    raise MalformedDataError(f"{what}: expected shape {shown}, got {array.shape}")
  return array


def check_values(array: np.ndarray, allowed_max: int, what: str, extra: tuple[int, ...] = ()) -> np.ndarray:
  bad = (array > allowed_max) & ~np.isin(array, extra) if extra else array > allowed_max
  if bad.any() or (array < 0).any():
    v = sorted(set(np.unique(array[bad | (array < 0)]).tolist()))[:10]
    raise MalformedDataError(f"{what}: labels must be in [0, {allowed_max}]" +
                             (f" or {list(extra)}" if extra else "") + f", found {v}")
  return array


def load_mat(path: str, what: str) -> dict:
  import scipy.io  # pylint: disable=g-import-not-at-top
  require_file(path, what)
  try:
    return scipy.io.loadmat(path)
  except Exception as e:
    raise MalformedDataError(f"{path}: cannot read {what} as a MATLAB .mat file ({e})") from e


# ---------------------------------------------------------------------------------------------- geometry
def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
  return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of [H, W, ...] (half-pixel centres)."""
  return a[_nearest_index(a.shape[0], hw[0])][:, _nearest_index(a.shape[1], hw[1])]


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of a uint8 [H, W, 3] image (Pillow; antialiased when shrinking)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.shape[:2] == tuple(hw):
    return image
  return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))


FILL = {"image": 0, "int": -1, "depth": -1.0, "normals": 0.0}


def _fill(key: str):
  return FILL[key] if key in FILL else FILL["int"]


def _resize_all(maps: dict, hw: tuple[int, int]) -> dict:
  return {k: resize_image(v, hw) if k == "image" else resize_nearest(v, hw) for k, v in maps.items()}


def _paste(maps: dict, out_hw: tuple[int, int], top: int, left: int) -> dict:
  """Crops / pads every map to out_hw; the map's pixel (top, left) goes to (0, 0) (negative = pad before)."""
  out = {}
  for k, v in maps.items():
    canvas = np.full(tuple(out_hw) + v.shape[2:], _fill(k), v.dtype)
    h, w = v.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + out_hw[0], h), min(left + out_hw[1], w)
    if y1 > y0 and x1 > x0:
      canvas[y0 - top:y1 - top, x0 - left:x1 - left] = v[y0:y1, x0:x1]
    out[k] = canvas
  return out


def _offset(size: int, out: int, rng: np.random.Generator) -> int:
  """Crop start (>= 0) when the map is larger than the output, minus the padding before it otherwise."""
  return int(rng.integers(0, size - out + 1)) if size >= out else -int(rng.integers(0, out - size + 1))


def augment(maps: dict, out_hw: tuple[int, int], base_scale: float, rng: np.random.Generator,
            scale_range: tuple[float, float] = (0.5, 2.0)) -> dict:
  """Random scale (uniform in `scale_range` times `base_scale`), random crop of out_hw (padded with ignore labels
  where the scaled image is smaller), horizontal flip with probability 1/2 (normals' x component negated).

  The same geometry is applied to the image (bilinear) and every label map (nearest neighbour). This is InvPT's
  RandomScaling([0.5, 2.0]) + RandomCrop + RandomHorizontalFlip, without its cat_max_ratio re-draws.
  """
  h, w = maps["image"].shape[:2]
  s = base_scale * rng.uniform(*scale_range)
  hw = (max(1, int(round(h * s))), max(1, int(round(w * s))))
  maps = _resize_all(maps, hw)
  top, left = _offset(hw[0], out_hw[0], rng), _offset(hw[1], out_hw[1], rng)
  maps = _paste(maps, out_hw, top, left)
  if rng.uniform() < 0.5:
    maps = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in maps.items()}
    if "normals" in maps:
      maps["normals"] = maps["normals"] * np.array([-1.0, 1.0, 1.0], np.float32)
  return maps


def fit_and_pad(maps: dict, out_hw: tuple[int, int]) -> dict:
  """Evaluation geometry: resize so the image fits inside out_hw (aspect kept), pad bottom / right with ignore."""
  h, w = maps["image"].shape[:2]
  s = min(out_hw[0] / h, out_hw[1] / w)
  hw = (min(out_hw[0], max(1, int(round(h * s)))), min(out_hw[1], max(1, int(round(w * s)))))
  return _paste(_resize_all(maps, hw), out_hw, 0, 0)


def label_boundaries(labels: np.ndarray) -> np.ndarray:
  """1-pixel-thick boundaries of a label map: pixel (i, j) is a boundary when its label differs from the pixel
  to its right or below. uint8 [H, W] in {0, 1}."""
  e = np.zeros(labels.shape, np.uint8)
  e[:, :-1] |= (labels[:, :-1] != labels[:, 1:])
  e[:-1, :] |= (labels[:-1, :] != labels[1:, :])
  return e
