"""Language modelling: next-token cross-entropy; token accuracy and perplexity.

outputs: logits float [B, L, V]; targets: int [B, L], negative = padding (ignored); mask: float [B] or None.
"""
from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
import optax

from mtl.tasks.registry import TASK_KINDS
from mtl.tasks.masking import sample_mask

METRICS = ("perplexity", "token_accuracy", "loss")


def _weights(targets, mask):
  return (targets >= 0).astype(jnp.float32) * sample_mask(mask, targets.shape[0])[:, None]


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean cross-entropy (nats) per non-padding token."""
  w = _weights(targets, mask)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), jnp.maximum(targets, 0))
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  w = _weights(targets, mask)
  t = jnp.maximum(targets, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), t)
  correct = (jnp.argmax(logits, -1) == t).astype(jnp.float32)
  return {"nll_sum": jnp.sum(ce * w), "correct": jnp.sum(correct * w), "count": jnp.sum(w)}


def finalize(s: dict) -> dict[str, float]:
  n = max(float(s["count"]), 1.0)
  nll = float(s["nll_sum"]) / n
  return {"perplexity": float(np.exp(min(nll, 50.0))), "token_accuracy": float(s["correct"]) / n, "loss": nll}


def check_shapes(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(logits_shape) != 3 or logits_shape[-1] != num_outputs:
    return f"expected logits [B, L, {num_outputs}], got {logits_shape}"
  if tuple(targets_shape) != tuple(logits_shape[:2]):
    return f"expected targets [B, L] = {logits_shape[:2]}, got {targets_shape}"
  return None


TASK_KINDS.register("lm", sys.modules[__name__])
