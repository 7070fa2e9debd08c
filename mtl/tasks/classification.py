"""Multi-class classification: softmax cross-entropy; accuracy.

outputs: logits float [B, C]; targets: int [B] in [0, C); mask: float [B] or None.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax

from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import masked_mean, sample_mask

HEAD = "classification"  # the head family that predicts this kind (mtl.models.registry.HEADS)
METRICS = ("accuracy", "loss")


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Masked mean softmax cross-entropy, a scalar."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets.astype(jnp.int32))
  return masked_mean(ce, mask)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  """Summable statistics of a batch: correct predictions, summed loss and labelled count."""
  m = sample_mask(mask, logits.shape[0])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets.astype(jnp.int32))
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return {"correct": jnp.sum(correct * m), "loss_sum": jnp.sum(ce * m), "count": jnp.sum(m)}


def finalize(s: dict) -> dict[str, float]:
  """Turns summed `stats` into metrics: accuracy in [0, 1] and mean loss."""
  n = max(float(s["count"]), 1.0)
  return {"accuracy": float(s["correct"]) / n, "loss": float(s["loss_sum"]) / n}


def check_shapes(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  """Returns a description of a mismatch between head outputs and targets, or None."""
  if len(logits_shape) != 2 or logits_shape[-1] != num_outputs:
    return f"expected logits [B, {num_outputs}], got {logits_shape}"
  if tuple(targets_shape) != tuple(logits_shape[:1]):
    return f"expected targets [B] = {logits_shape[:1]}, got {targets_shape}"
  return None


del jax


TASK_KINDS.register("classification", sys.modules[__name__])
