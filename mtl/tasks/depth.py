"""Dense depth regression: L1 loss; absolute and RMS error (lower is better).

outputs: float [B, H, W, 1]; targets: float [B, H, W]; pixels with a non-finite or negative target are ignored;
mask: float [B] or None.
"""
from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np

from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import sample_mask

HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
METRICS = ("abs_err", "rmse", "loss")


def _weights_and_targets(targets, mask):
  t = targets.astype(jnp.float32)
  valid = (jnp.isfinite(t) & (t >= 0)).astype(jnp.float32)
  w = valid * sample_mask(mask, t.shape[0])[:, None, None]
  return w, jnp.where(valid > 0, t, 0.0)


def loss(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  w, t = _weights_and_targets(targets, mask)
  err = jnp.abs(outputs[..., 0].astype(jnp.float32) - t)
  return jnp.sum(err * w) / jnp.maximum(jnp.sum(w), 1.0)


def stats(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  w, t = _weights_and_targets(targets, mask)
  d = outputs[..., 0].astype(jnp.float32) - t
  return {"abs_sum": jnp.sum(jnp.abs(d) * w), "sq_sum": jnp.sum(d * d * w), "count": jnp.sum(w)}


def finalize(s: dict) -> dict[str, float]:
  n = max(float(s["count"]), 1.0)
  abs_err = float(s["abs_sum"]) / n
  return {"abs_err": abs_err, "rmse": float(np.sqrt(float(s["sq_sum"]) / n)), "loss": abs_err}


def check_shapes(outputs_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(outputs_shape) != 4 or outputs_shape[-1] != 1:
    return f"expected outputs [B, H, W, 1], got {outputs_shape}"
  if tuple(targets_shape) != tuple(outputs_shape[:3]):
    return f"expected targets [B, H, W] = {outputs_shape[:3]}, got {targets_shape}"
  return None


TASK_KINDS.register("depth", sys.modules[__name__])
