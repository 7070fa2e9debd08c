"""Semantic segmentation: per-pixel softmax cross-entropy; pixel accuracy and mean IoU.

outputs: logits float [B, H, W, C]; targets: int [B, H, W] in [0, C) (negative = ignored pixel);
mask: float [B] or None (whole sample without labels).
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import sample_mask

HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
METRICS = ("miou", "pixel_accuracy", "loss")


def _pixel_weights(targets, mask):
  valid = (targets >= 0).astype(jnp.float32)
  return valid * sample_mask(mask, targets.shape[0])[:, None, None]


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean cross-entropy over labelled pixels of labelled samples."""
  w = _pixel_weights(targets, mask)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), jnp.maximum(targets, 0))
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  """Confusion matrix [C, C] (rows: truth, cols: prediction) over labelled pixels, and the loss sum."""
  num_classes = logits.shape[-1]
  w = _pixel_weights(targets, mask)
  pred = jnp.argmax(logits, -1)
  truth = jnp.maximum(targets, 0)
  idx = (truth * num_classes + pred).reshape(-1)
  confusion = jax.ops.segment_sum(w.reshape(-1), idx, num_segments=num_classes * num_classes)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), truth)
  return {"confusion": confusion.reshape(num_classes, num_classes), "loss_sum": jnp.sum(ce * w),
          "count": jnp.sum(w)}


def finalize(s: dict) -> dict[str, float]:
  """mIoU over classes present in truth or prediction; pixel accuracy; mean loss per pixel."""
  c = np.asarray(s["confusion"], np.float64)
  inter = np.diag(c)
  union = c.sum(0) + c.sum(1) - inter
  present = union > 0
  miou = float(np.mean(inter[present] / union[present])) if present.any() else 0.0
  n = max(float(s["count"]), 1.0)
  return {"miou": miou, "pixel_accuracy": float(inter.sum()) / n, "loss": float(s["loss_sum"]) / n}


def check_shapes(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(logits_shape) != 4 or logits_shape[-1] != num_outputs:
    return f"expected logits [B, H, W, {num_outputs}], got {logits_shape}"
  if tuple(targets_shape) != tuple(logits_shape[:3]):
    return f"expected targets [B, H, W] = {logits_shape[:3]}, got {targets_shape}"
  return None


TASK_KINDS.register("semseg", sys.modules[__name__])
