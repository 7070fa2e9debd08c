"""Human part segmentation (PASCAL-Context multi-task: background + 6 parts = head, torso, upper arm, lower arm,
upper leg, lower leg): per-pixel cross-entropy; mIoU over the 7 classes, on images that contain people only.

outputs: logits float [B, H, W, 7]; targets: int [B, H, W], negative = ignored pixel; mask: float [B], 1 where the
image contains a person (the data sets it; images without people contribute neither loss nor statistics, as in the
ASTMT / MTI-Net evaluation). Losses and confusion statistics are those of `mtl.tasks.semseg`.

Difference from InvPT's online HumanPartsMeter: that meter averages IoU over all 7 classes with IoU 0 for a class
never seen nor predicted; here such a class is left out of the mean (it never happens on the full val split).
"""
from __future__ import annotations

import sys
import jax.numpy as jnp

from mtl.tasks import semseg
from mtl.tasks.registry import TASK_KINDS

METRICS = ("miou", "pixel_accuracy", "loss")
HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
PART_NAMES = ("background", "head", "torso", "uarm", "larm", "uleg", "lleg")


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean cross-entropy over labelled pixels of images with people."""
  return semseg.loss(logits, targets, mask)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  return semseg.stats(logits, targets, mask)


def finalize(s: dict) -> dict[str, float]:
  return semseg.finalize(s)


def check_shapes(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  return semseg.check_shapes(logits_shape, targets_shape, num_outputs)


TASK_KINDS.register("human_parts", sys.modules[__name__])
