"""Edge detection: class-balanced per-pixel sigmoid cross-entropy; F-score at threshold 0.5.

outputs: logits float [B, H, W, 1]; targets: {0, 1} [B, H, W]; mask: float [B] or None.
Balancing follows HED: positives weigh |negatives| / |all| and negatives |positives| / |all| per batch.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax

from mtl.tasks import shapes
from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import sample_mask

HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
METRICS = ("f1", "precision", "recall", "loss")


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  y = targets.astype(jnp.float32)
  w = jnp.broadcast_to(sample_mask(mask, y.shape[0])[:, None, None], y.shape)
  total = jnp.maximum(jnp.sum(w), 1.0)
  pos_frac = jax.lax.stop_gradient(jnp.sum(y * w) / total)
  balance = y * (1.0 - pos_frac) + (1.0 - y) * pos_frac
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0].astype(jnp.float32), y)
  return 2.0 * jnp.sum(bce * balance * w) / total


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  y = targets.astype(jnp.float32)
  w = sample_mask(mask, y.shape[0])[:, None, None]
  pred = (logits[..., 0] > 0).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0].astype(jnp.float32), y)
  return {"tp": jnp.sum(pred * y * w), "fp": jnp.sum(pred * (1 - y) * w), "fn": jnp.sum((1 - pred) * y * w),
          "loss_sum": jnp.sum(bce * w), "count": jnp.sum(jnp.broadcast_to(w, y.shape))}


def finalize(s: dict) -> dict[str, float]:
  tp, fp, fn = float(s["tp"]), float(s["fp"]), float(s["fn"])
  precision = tp / (tp + fp) if tp + fp > 0 else 0.0
  recall = tp / (tp + fn) if tp + fn > 0 else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
  return {"f1": f1, "precision": precision, "recall": recall,
          "loss": float(s["loss_sum"]) / max(float(s["count"]), 1.0)}


check_shapes = shapes.single_channel_map


TASK_KINDS.register("edges", sys.modules[__name__])
