"""Binary classification (one logit): sigmoid cross-entropy; accuracy, F1.

outputs: logits float [B, 1]; targets: {0, 1} [B] (int or float); mask: float [B] or None.
"""
from __future__ import annotations

import sys

import jax.numpy as jnp
import optax

from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import masked_mean, sample_mask

HEAD = "classification"  # the head family that predicts this kind (mtl.models.registry.HEADS)
METRICS = ("accuracy", "f1", "loss")


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0].astype(jnp.float32), targets.astype(jnp.float32))
  return masked_mean(bce, mask)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  m = sample_mask(mask, logits.shape[0])
  z = logits[..., 0].astype(jnp.float32)
  y = targets.astype(jnp.float32)
  pred = (z > 0).astype(jnp.float32)
  return {
      "correct": jnp.sum((pred == y) * m),
      "tp": jnp.sum(pred * y * m),
      "fp": jnp.sum(pred * (1 - y) * m),
      "fn": jnp.sum((1 - pred) * y * m),
      "loss_sum": jnp.sum(optax.sigmoid_binary_cross_entropy(z, y) * m),
      "count": jnp.sum(m),
  }


def finalize(s: dict) -> dict[str, float]:
  n = max(float(s["count"]), 1.0)
  tp, fp, fn = float(s["tp"]), float(s["fp"]), float(s["fn"])
  f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0
  return {"accuracy": float(s["correct"]) / n, "f1": f1, "loss": float(s["loss_sum"]) / n}


def check_shapes(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(logits_shape) != 2 or logits_shape[-1] != 1:
    return f"expected logits [B, 1], got {logits_shape}"
  if tuple(targets_shape) != tuple(logits_shape[:1]):
    return f"expected targets [B] = {logits_shape[:1]}, got {targets_shape}"
  return None


TASK_KINDS.register("binary", sys.modules[__name__])
