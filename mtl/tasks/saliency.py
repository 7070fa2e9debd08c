"""Saliency: class-balanced per-pixel sigmoid cross-entropy; max F-measure over thresholds (maxF), as in the
multi-task dense-prediction papers (ASTMT, MTI-Net, ATRC, InvPT, TaskExpert).

outputs: logits float [B, H, W, 1]; targets: int [B, H, W] in {0, 1}, negative = ignored pixel (padding);
mask: float [B] or None.

Loss (InvPT's balanced CrossEntropyLoss): per batch, positives weigh w = |negatives| / |valid| and negatives 1 - w;
mean over valid pixels. maxF: precision and recall are summed over the whole dataset at each threshold
t in {0.05, 0.10, ..., 0.95} (prediction = sigmoid >= t), F_beta with beta^2 = 0.3, and the best threshold's F is
reported (InvPT's SaliencyMeter: threshold_step 0.05, beta_squared 0.3). Also the best IoU of the salient region.
"""
from __future__ import annotations

import sys
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.tasks.masking import sample_mask
from mtl.tasks import shapes
from mtl.tasks.registry import TASK_KINDS

METRICS = ("max_f", "best_threshold", "max_iou", "loss")
HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
NUM_BINS = 20  # thresholds k / NUM_BINS for k = 1 .. NUM_BINS - 1.
BETA_SQ = 0.3


def _weights(targets, mask):
  valid = (targets >= 0).astype(jnp.float32)
  return valid * sample_mask(mask, targets.shape[0])[:, None, None], jnp.maximum(targets, 0).astype(jnp.float32)


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  w, y = _weights(targets, mask)
  total = jnp.maximum(jnp.sum(w), 1.0)
  neg_frac = jax.lax.stop_gradient(jnp.sum((1.0 - y) * w) / total)
  balance = y * neg_frac + (1.0 - y) * (1.0 - neg_frac)
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0].astype(jnp.float32), y)
  return jnp.sum(bce * balance * w) / total


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  """Histograms over probability bins [NUM_BINS] of all valid pixels and of salient ones; loss sum (plain BCE)."""
  w, y = _weights(targets, mask)
  z = logits[..., 0].astype(jnp.float32)
  bins = jnp.clip(jnp.floor(jax.nn.sigmoid(z) * NUM_BINS).astype(jnp.int32), 0, NUM_BINS - 1).reshape(-1)
  hist = jax.ops.segment_sum(w.reshape(-1), bins, num_segments=NUM_BINS)
  pos_hist = jax.ops.segment_sum((w * y).reshape(-1), bins, num_segments=NUM_BINS)
  bce = optax.sigmoid_binary_cross_entropy(z, y)
  return {"hist": hist, "pos_hist": pos_hist, "loss_sum": jnp.sum(bce * w), "count": jnp.sum(w)}


def curves(s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(thresholds, true positives, predicted positives, actual positives) at t = k / NUM_BINS, k = 1..NUM_BINS-1."""
  hist, pos = np.asarray(s["hist"], np.float64), np.asarray(s["pos_hist"], np.float64)
  pp = np.cumsum(hist[::-1])[::-1][1:]  # pixels with prob >= k / NUM_BINS.
  tp = np.cumsum(pos[::-1])[::-1][1:]
  return np.arange(1, NUM_BINS) / NUM_BINS, tp, pp, np.full_like(tp, pos.sum())


def finalize(s: dict) -> dict[str, float]:
  t, tp, pp, ap = curves(s)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(pp > 0, tp / pp, 0.0)
    recall = np.where(ap > 0, tp / ap, 0.0)
    denom = BETA_SQ * precision + recall
    f = np.where(denom > 0, (1 + BETA_SQ) * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    union = pp + ap - tp
    iou = np.where(union > 0, tp / np.where(union > 0, union, 1.0), 0.0)
  k = int(np.argmax(f))
  return {"max_f": float(f[k]), "best_threshold": float(t[k]), "max_iou": float(iou.max()),
          "loss": float(s["loss_sum"]) / max(float(s["count"]), 1.0)}


check_shapes = shapes.single_channel_map


TASK_KINDS.register("saliency", sys.modules[__name__])
