"""PASCAL-Context, multi-task version (PASCAL-MT of ASTMT / MTI-Net / ATRC / InvPT / TaskExpert: 4,998 train and
5,105 val images of up to 500 x 500): semantic segmentation (21 VOC classes), human parts (6 parts + background,
on images with people), saliency and surface normals (both distilled labels), boundaries.

Folder layout (InvPT/data/pascal_context.py, the PASCAL_MT archive), <root> = $MTL_PASCAL_CONTEXT_DIR or
<data_dir>/downloads/manual/PASCALContext:
  ImageSets/Context/{train,val}.txt     image ids, one per line
  JPEGImages/<id>.jpg                   RGB image
  semseg/VOC12/<id>.png, else semseg/pascal-context/<id>.png
                                        class map 0..20, 255 = ignored
  pascal-context/trainval/<id>.mat      'LabelMap' [H, W]: the 459-class PASCAL-Context labels; boundaries are
                                        where it changes, normals are valid on the classes NYUD knows
  human_parts/<id>.mat                  PASCAL-Part 'anno' struct (objects: class_ind, mask, parts: part_name, mask)
  normals_distill/<id>.png              RGB: normal = 2 * value / 255 - 1
  sal_distill/<id>.png                  saliency, salient where value > 127
Stored: the original JPEG / PNG bytes, plus PNGs computed at build time from the .mat files (boundaries, human
parts, the normals' valid mask) and the 'has_person' flag.

Differences from InvPT's loader: boundaries are 1-pixel label changes to the right / below (InvPT thins the
non-zero Laplacian of LabelMap with skimage; both give 1-pixel-thick boundaries between differently labelled
regions); images with a person but no part annotation have all-background part maps in both.

Tasks: 'semseg' (mIoU), 'human_parts' (mIoU, images with people only), 'saliency' (maxF), 'normals' (mean angular
error, lower is better), 'edge' (ODS-F, tolerance 0.0075 of the diagonal). 'pascal_context' is 512 x 512; any other
size as 'pascal_context-HxW'. Training: scale [0.5, 2] x (H / 512), crop, flip; evaluation: fit and pad.
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

NUM_CLASSES = 21
NUM_PARTS = 6
PERSON = 15  # PASCAL VOC class index of 'person' (class_ind in PASCAL-Part).
NOMINAL_HW = (512, 512)
SPLITS = ("train", "val")
# PASCAL-Part part name -> one of 6 parts (1 head, 2 torso, 3 upper arm, 4 lower arm / hand, 5 upper leg,
# 6 lower leg / foot): the 6-part grouping of ASTMT / InvPT.
PART_GROUPS = {"hair": 1, "head": 1, "lear": 1, "lebrow": 1, "leye": 1, "mouth": 1, "nose": 1, "rear": 1,
               "rebrow": 1, "reye": 1, "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3, "lhand": 4, "llarm": 4,
               "rhand": 4, "rlarm": 4, "luleg": 5, "ruleg": 5, "lfoot": 6, "llleg": 6, "rfoot": 6, "rlleg": 6}
# PASCAL-Context (459-class LabelMap) ids whose normals are kept: the classes also in NYUD's class list (except
# 'unknown') plus 'tvmonitor', as InvPT derives them from db_info/nyu_classes.json and context_classes.json.
NORMALS_VALID_CLASSES = np.array([
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55, 56,
    59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115, 122, 124,
    135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202,
    213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260, 261,
    263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309, 310, 314,
    315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380, 383,
    384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 429, 430, 432, 440, 441, 442, 443,
    444, 446, 454, 457, 427])
assert len(NORMALS_VALID_CLASSES) == 170


def human_parts(path: str, hw: tuple[int, int]) -> tuple[np.ndarray, bool]:
  """(part map uint8 [H, W] in 0..6, whether the image has a person) from a PASCAL-Part annotation .mat."""
  m = dense_io.load_mat(path, "PASCAL-Part annotation")
  try:
    objects = m["anno"][0, 0]["objects"]
    objects = objects[0] if objects.size else []
    target = np.zeros(hw, np.uint8)
    has_person = False
    for obj in objects:
      if int(np.asarray(obj["class_ind"]).ravel()[0]) != PERSON:
        continue
      if np.asarray(obj["mask"]).sum() > 0:
        has_person = True
      parts = obj["parts"]
      for part in (parts[0] if parts.size else []):
        name = str(np.asarray(part["part_name"]).ravel()[0])
        if name not in PART_GROUPS:
          raise dense_io.MalformedDataError(f"{path}: unknown human part name {name!r}; known: {sorted(PART_GROUPS)}")
        mask = dense_io.check_shape(np.asarray(part["mask"]), hw, f"{path}: mask of part {name!r}")
        target[mask.astype(bool)] = PART_GROUPS[name]
  except (KeyError, IndexError, ValueError, TypeError) as e:
    if isinstance(e, dense_io.MalformedDataError):
      raise
    raise dense_io.MalformedDataError(f"{path}: expected a PASCAL-Part struct anno.objects[k].(class_ind, mask, "
                                      f"parts[j].(part_name, mask)) ({type(e).__name__}: {e})") from e
  return target, has_person


class MtlPascalContext(FolderBuilder):
  """source: the PASCAL-Context multi-task folder (default: $MTL_PASCAL_CONTEXT_DIR or
  <data_dir>/downloads/manual/PASCALContext)."""
  name = PREFIX + "pascal_context"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  ENV_VAR = "MTL_PASCAL_CONTEXT_DIR"
  MANUAL_DIR = "PASCALContext"
  LAYOUT = ("  ImageSets/Context/{train,val}.txt, JPEGImages/<id>.jpg, semseg/VOC12/<id>.png (or "
            "semseg/pascal-context/<id>.png), pascal-context/trainval/<id>.mat, human_parts/<id>.mat, "
            "normals_distill/<id>.png, sal_distill/<id>.png")
  FEATURES = {k: tfds.features.Tensor(shape=(), dtype=np.object_) for k in (
      "id", "image", "semseg", "edge", "human_parts", "normals", "normals_mask", "saliency")}
  FEATURES["has_person"] = tfds.features.Scalar(dtype=np.int32)

  def split_ids(self, root):
    return {s: dense_io.read_split_list(os.path.join(root, "ImageSets", "Context", f"{s}.txt")) for s in SPLITS}

  def files(self, root, image_id):
    seg = os.path.join(root, "semseg", "VOC12", f"{image_id}.png")
    if not os.path.isfile(seg):
      seg = os.path.join(root, "semseg", "pascal-context", f"{image_id}.png")
    return {"image": os.path.join(root, "JPEGImages", f"{image_id}.jpg"), "semseg (VOC12 or pascal-context)": seg,
            "context labels": os.path.join(root, "pascal-context", "trainval", f"{image_id}.mat"),
            "human parts": os.path.join(root, "human_parts", f"{image_id}.mat"),
            "normals": os.path.join(root, "normals_distill", f"{image_id}.png"),
            "saliency": os.path.join(root, "sal_distill", f"{image_id}.png")}

  def example(self, root, image_id):
    f = self.files(root, image_id)
    fs, fl, fh, fn, fsal = (f["semseg (VOC12 or pascal-context)"], f["context labels"], f["human parts"],
                            f["normals"], f["saliency"])
    image_bytes = dense_io.read_bytes(f["image"], "image")
    hw = dense_io.decode_image(image_bytes, f["image"], "RGB").shape[:2]
    seg_bytes = dense_io.read_bytes(fs, "semseg")
    seg = dense_io.check_shape(dense_io.decode_image(seg_bytes, fs), hw, f"{fs} (class map of the {hw} image)")
    dense_io.check_values(seg, NUM_CLASSES - 1, fs, extra=(255,))
    mat = dense_io.load_mat(fl, "PASCAL-Context labels")
    if "LabelMap" not in mat:
      raise dense_io.MalformedDataError(f"{fl}: expected a variable 'LabelMap', found {sorted(mat)}")
    labels = dense_io.check_shape(np.asarray(mat["LabelMap"]), hw, f"{fl}: LabelMap")
    parts, has_person = human_parts(fh, hw)
    normals_bytes = dense_io.read_bytes(fn, "normals")
    dense_io.check_shape(dense_io.decode_image(normals_bytes, fn), hw + (3,), f"{fn} (RGB normals)")
    sal_bytes = dense_io.read_bytes(fsal, "saliency")
    dense_io.check_shape(dense_io.decode_image(sal_bytes, fsal, "L"), hw, f"{fsal} (saliency map)")
    return {"id": image_id.encode(), "image": image_bytes, "semseg": seg_bytes,
            "edge": dense_io.encode_png(dense_io.label_boundaries(labels)),
            "human_parts": dense_io.encode_png(parts), "has_person": int(has_person), "normals": normals_bytes,
            "normals_mask": dense_io.encode_png(np.isin(labels, NORMALS_VALID_CLASSES).astype(np.uint8)),
            "saliency": sal_bytes}


def decode(record: dict) -> dict:
  """Stored record -> full-resolution maps (image uint8; int32 label maps with -1 ignored; normals float32)."""
  seg = dense_io.decode_image(record["semseg"], "semseg").astype(np.int32)
  seg[seg == 255] = -1
  normals = dense_io.decode_image(record["normals"], "normals", "RGB").astype(np.float32) * (2.0 / 255.0) - 1.0
  normals *= dense_io.decode_image(record["normals_mask"], "normals_mask")[..., None].astype(np.float32)
  return {"image": dense_io.decode_image(record["image"], "image", "RGB"), "semseg": seg,
          "human_parts": dense_io.decode_image(record["human_parts"], "human_parts").astype(np.int32),
          "saliency": (dense_io.decode_image(record["saliency"], "saliency", "L") > 127).astype(np.int32),
          "normals": normals, "edge": dense_io.decode_image(record["edge"], "edge").astype(np.int32)}


def transform(record: dict, out_hw: tuple[int, int], rng: np.random.Generator | None) -> dict:
  maps = decode(record)
  maps = (dense_io.fit_and_pad(maps, out_hw) if rng is None else
          dense_io.augment(maps, out_hw, min(out_hw[0] / NOMINAL_HW[0], out_hw[1] / NOMINAL_HW[1]), rng))
  maps["has_person"] = np.float32(record["has_person"])
  return maps


TASKS = (TaskSpec("semseg", "semseg", NUM_CLASSES, metric="miou"),
         TaskSpec("human_parts", "human_parts", NUM_PARTS + 1, metric="miou"),
         TaskSpec("saliency", "saliency", 1, metric="max_f"),
         TaskSpec("normals", "normals", 3, metric="mean", higher_is_better=False),
         TaskSpec("edge", "boundary", 1, metric="ods_f"))


def collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  out = {"image": image_to_float(records["image"], 3)}
  for t in tasks:
    out[t.target_key] = records[t.name]
    if t.name == "human_parts":
      out[t.mask_key] = records["has_person"].astype(np.float32)
  return out


SPEC = DatasetSpec(name="pascal_context", builder=MtlPascalContext, input_key="image", input_shape=NOMINAL_HW + (3,),
                   tasks=TASKS, splits={"train": 4998, "val": 5105}, collate=collate, transform=transform)
