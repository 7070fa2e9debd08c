"""NYUDv2, multi-task version (795 train / 654 val images of 480 x 640; the split and files used by PAD-Net,
MTI-Net, ATRC, InvPT and TaskExpert): semantic segmentation (40 classes), depth, surface normals, boundaries.

Folder layout (InvPT/data/nyud.py, the archive distributed with ATRC / InvPT), <root> = $MTL_NYUD_DIR or
<data_dir>/downloads/manual/NYUDv2:
  gt_sets/{train,val}.txt       image ids, one per line
  images/<id>.png               RGB image
  segmentation/<id>.png         uint8 class map: 0 = unlabelled (ignored), 1..40 = classes 0..39
  depth/<id>.npy                float depth in metres [H, W] (or [H, W, 1])
  normals/<id>.png              RGB: normal = 2 * value / 255 - 1
  edge/<id>.png                 boundary map, 0 / 255
Stored as the original PNG bytes (decoded by the pipeline) plus depth as float32.

Tasks: 'semseg' (mIoU), 'depth' (RMSE, lower is better; L1 loss), 'normals' (mean angular error, lower is better),
'edge' (ODS-F with NYUD's tolerance 0.011 of the diagonal). Pipeline: training images are randomly scaled by
[0.5, 2] x (H / 448), cropped to H x W and flipped (InvPT, 448 x 576 crops); evaluation images are resized to fit
H x W and padded with ignored labels. 'nyud' is 448 x 576; 'nyud-HxW' any other size.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import dense_io
from mtl.data.builders.base import PREFIX
from mtl.data.builders.dense import FolderBuilder
from mtl.data.spec import DatasetSpec, image_to_float
from mtl.tasks.base import TaskSpec

NUM_CLASSES = 40
NOMINAL_HW = (448, 576)
SPLITS = ("train", "val")


class MtlNyud(FolderBuilder):
  """source: the NYUDv2 multi-task folder (default: $MTL_NYUD_DIR or <data_dir>/downloads/manual/NYUDv2)."""
  name = PREFIX + "nyud"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  ENV_VAR = "MTL_NYUD_DIR"
  MANUAL_DIR = "NYUDv2"
  LAYOUT = ("  gt_sets/{train,val}.txt, images/<id>.png, segmentation/<id>.png, depth/<id>.npy, normals/<id>.png, "
            "edge/<id>.png")
  FEATURES = {"id": tfds.features.Tensor(shape=(), dtype=np.object_),
              "image": tfds.features.Tensor(shape=(), dtype=np.object_),
              "semseg": tfds.features.Tensor(shape=(), dtype=np.object_),
              "normals": tfds.features.Tensor(shape=(), dtype=np.object_),
              "edge": tfds.features.Tensor(shape=(), dtype=np.object_),
              "depth": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="zlib")}

  def split_ids(self, root):
    return {s: dense_io.read_split_list(os.path.join(root, "gt_sets", f"{s}.txt")) for s in SPLITS}

  def files(self, root, image_id):
    return {"image": os.path.join(root, "images", f"{image_id}.png"),
            "segmentation": os.path.join(root, "segmentation", f"{image_id}.png"),
            "normals": os.path.join(root, "normals", f"{image_id}.png"),
            "edge": os.path.join(root, "edge", f"{image_id}.png"),
            "depth": os.path.join(root, "depth", f"{image_id}.npy")}

  def example(self, root, image_id):
    f = self.files(root, image_id)
    raw = {k: dense_io.read_bytes(p, k) for k, p in f.items() if k != "depth"}
    image = dense_io.decode_image(raw["image"], f["image"], "RGB")
    hw = image.shape[:2]
    seg = dense_io.check_shape(dense_io.decode_image(raw["segmentation"], f["segmentation"]), hw,
                               f"{f['segmentation']} (class map of the {hw} image)")
    dense_io.check_values(seg, NUM_CLASSES, f["segmentation"])
    normals = dense_io.decode_image(raw["normals"], f["normals"])
    dense_io.check_shape(normals, hw + (3,), f"{f['normals']} (RGB normals)")
    dense_io.check_shape(dense_io.decode_image(raw["edge"], f["edge"], "L"), hw, f"{f['edge']} (boundary map)")
    try:
      depth = np.load(f["depth"], allow_pickle=False)
    except Exception as e:
      raise dense_io.MalformedDataError(f"{f['depth']}: cannot read as a .npy array ({e})") from e
    depth = depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
    dense_io.check_shape(depth, hw, f"{f['depth']} (depth map)")
    if not np.all(np.isfinite(depth)):
      raise dense_io.MalformedDataError(f"{f['depth']}: depth has non-finite values")
    return {"id": image_id.encode(), "image": raw["image"], "semseg": raw["segmentation"],
            "normals": raw["normals"], "edge": raw["edge"], "depth": depth.astype(np.float32)}


def decode(record: dict) -> dict:
  """Stored record -> full-resolution maps (image uint8, semseg int32 with -1 ignored, depth, normals, edge)."""
  image = dense_io.decode_image(record["image"], "image", "RGB")
  seg = dense_io.decode_image(record["semseg"], "semseg").astype(np.int32) - 1
  normals = dense_io.decode_image(record["normals"], "normals", "RGB").astype(np.float32) * (2.0 / 255.0) - 1.0
  edge = (dense_io.decode_image(record["edge"], "edge", "L") >= 128).astype(np.int32)
  return {"image": image, "semseg": seg, "depth": np.asarray(record["depth"], np.float32), "normals": normals,
          "edge": edge}


def transform(record: dict, out_hw: tuple[int, int], rng: np.random.Generator | None) -> dict:
  maps = decode(record)
  if rng is None:
    return dense_io.fit_and_pad(maps, out_hw)
  return dense_io.augment(maps, out_hw, min(out_hw[0] / NOMINAL_HW[0], out_hw[1] / NOMINAL_HW[1]), rng)


TASKS = (TaskSpec("semseg", "semseg", NUM_CLASSES, metric="miou"),
         TaskSpec("depth", "depth", 1, metric="rmse", higher_is_better=False),
         TaskSpec("normals", "normals", 3, metric="mean", higher_is_better=False),
         TaskSpec("edge", "boundary_nyud", 1, metric="ods_f"))


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  out = {"image": image_to_float(records["image"], 3)}
  for t in tasks:
    out[t.target_key] = records[t.name]
  return out


SPEC = DatasetSpec(name="nyud", builder=MtlNyud, input_key="image", input_shape=NOMINAL_HW + (3,), tasks=TASKS,
                   splits={"train": 795, "val": 654}, collate=collate, transform=transform)
