"""Scalar regression: squared-error loss; MSE (the main metric, lower is better), MAE.

outputs: float [B, 1]; targets: float [B]; mask: float [B] or None. A non-finite target is an error of the data,
not a missing label (use the mask for those), so it propagates into the loss.
"""
from __future__ import annotations

import sys

import jax.numpy as jnp

from mtl.tasks.masking import masked_mean, sample_mask
from mtl.tasks.registry import TASK_KINDS

METRICS = ("mse", "mae", "loss")
HEAD = "classification"  # a [B, num_outputs] head (mtl.models.registry.HEADS); its logits are the predictions


def loss(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  d = outputs[..., 0].astype(jnp.float32) - targets.astype(jnp.float32)
  return masked_mean(d * d, mask)


def stats(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  m = sample_mask(mask, outputs.shape[0])
  d = outputs[..., 0].astype(jnp.float32) - targets.astype(jnp.float32)
  return {"sq_sum": jnp.sum(d * d * m), "abs_sum": jnp.sum(jnp.abs(d) * m), "count": jnp.sum(m)}


def finalize(s: dict) -> dict[str, float]:
  n = max(float(s["count"]), 1.0)
  mse = float(s["sq_sum"]) / n
  return {"mse": mse, "mae": float(s["abs_sum"]) / n, "loss": mse}


def check_shapes(outputs_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(outputs_shape) != 2 or outputs_shape[-1] != 1:
    return f"expected outputs [B, 1], got {outputs_shape}"
  if tuple(targets_shape) != tuple(outputs_shape[:1]):
    return f"expected targets [B] = {outputs_shape[:1]}, got {targets_shape}"
  return None


TASK_KINDS.register("regression", sys.modules[__name__])
