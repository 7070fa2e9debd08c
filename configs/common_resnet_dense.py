"""Shared by configs/nyud_resnet.py and configs/pascal_resnet.py: a slimmable ResNet-18/34 encoder (the backbone
family of the controllable-MTL paper, Aich et al. ICCV 2023) at output stride 8 or 16 with dense heads, optionally
trained as a controllable model (sandwich rule + CIKD over widths 0.25..1, configs/common.make_controllable).

Extra args: depth=18|34 (default 34), os=8|16 (default 16), control=1 (controllable), pretrained=FILE (timm
safetensors; switches the norm to the folded-BatchNorm affine and the input to ImageNet normalisation).
The optimisation follows the InvPT protocol of configs/common_dense.py except lr 1e-4 (a CNN fine-tuning rate;
the controllable paper's own schedule is not reproduced here).
"""
from configs import common
from configs import common_dense as db
from mtl.models.resnet import IMAGENET_MEAN, IMAGENET_STD

def config(name: str, dataset: str, nominal_hw: tuple[int, int], weights: dict, arg: str | None):
  args = db.parse(arg, name, depth=34, os=16, control=False)
  c = db.base(dataset, nominal_hw, weights, args, lr=1e-4)
  smoke = args.smoke
  c.model.encoder.name = "resnet"
  c.model.encoder.depth = args.depth
  c.model.encoder.output_stride = args.os
  if args.depth not in (18, 34) or args.os not in (8, 16):
    raise ValueError(f"{name}: depth must be 18 or 34 and os 8 or 16, got depth={args.depth}, os={args.os}")
  if smoke:
    c.model.encoder.stem_channels = 16
    c.model.encoder.stage_channels = (16, 16, 32, 32)
  if c.model.pretrained.path:
    c.model.encoder.norm = "affine"
    c.model.encoder.pixel_mean = IMAGENET_MEAN
    c.model.encoder.pixel_std = IMAGENET_STD
  else:
    c.model.encoder.norm = "group"
  db.set_pretrained_format(c, "timm_resnet")
  if args.control:
    common.make_controllable(c)
  return c
