"""Boundary detection: weighted sigmoid cross-entropy; optimal-dataset-scale F-measure (ODS-F) with a matching
tolerance, the edge metric of the NYUDv2 / PASCAL-Context multi-task papers.

outputs: logits float [B, H, W, 1]; targets: int [B, H, W] in {0, 1}, negative = ignored pixel; mask: float [B].

Loss (InvPT's BalancedBinaryCrossEntropyLoss with pos_weight 0.95): positives weigh `POS_WEIGHT`, negatives
1 - `POS_WEIGHT`; mean over valid pixels.

ODS-F, summable: the tolerance radius is r = max(1, round(max_dist * diagonal)) pixels of the evaluated map
(max_dist 0.0075 for PASCAL-Context, 0.011 for NYUDv2, the SEISM settings of ASTMT / MTI-Net). At each threshold
t = k / 100 (k = 1..99) a predicted boundary pixel (sigmoid >= t) is correct when a ground-truth boundary pixel lies
within distance r of it, and a ground-truth pixel is recovered when a predicted pixel (>= t) lies within r of it.
Precision and recall are summed over the whole dataset per threshold and the best threshold's F1 is reported.
Both counts come from histograms: a ground-truth pixel is recovered at t iff the maximum probability over its
radius-r disk is >= t, so one disk max-filter of the probabilities and one of the ground truth suffice.

How this differs from the SEISM / BSDS toolkit (so the numbers are close to, not identical with, the published):
  * matching is not one-to-one: BSDS solves a bipartite assignment (each ground-truth pixel explains at most one
    predicted pixel); here any predicted pixel within r of a boundary counts, so double (thick) responses are not
    penalised; the toolkit also thins predictions with non-maximum suppression first, which is not done here;
  * evaluation is at the model's (possibly resized) resolution, not the original image's;
  * 99 evenly spaced thresholds instead of the toolkit's default; no OIS or AP (not summable per batch).
"""
from __future__ import annotations

import sys
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.tasks.masking import sample_mask
from mtl.tasks import shapes
from mtl.tasks.registry import TASK_KINDS

METRICS = ("ods_f", "ods_threshold", "precision", "recall", "loss")
HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
NUM_BINS = 100
POS_WEIGHT = 0.95
MAX_DIST_PASCAL = 0.0075
MAX_DIST_NYUD = 0.011


def radius(height: int, width: int, max_dist: float) -> int:
  """Tolerance radius in pixels: max(1, round(max_dist * image diagonal))."""
  return max(1, int(round(max_dist * math.hypot(height, width))))


def disk_max(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """Max of x [B, H, W] over the Euclidean disk of radius r around each pixel (outside the image: -inf)."""
  b, h, w = x.shape
  xp = jnp.pad(x, ((0, 0), (r, r), (r, r)), constant_values=-jnp.inf)
  out = jnp.full(x.shape, -jnp.inf, x.dtype)
  for dy in range(-r, r + 1):
    half = math.isqrt(r * r - dy * dy)
    rows = xp[:, r + dy:r + dy + h, :]
    rmax = jax.lax.reduce_window(rows, -jnp.inf, jax.lax.max, (1, 1, 2 * half + 1), (1, 1, 1), "VALID")
    out = jnp.maximum(out, rmax[:, :, r - half:r - half + w])
  return out


def _weights(targets, mask):
  valid = (targets >= 0).astype(jnp.float32)
  return valid * sample_mask(mask, targets.shape[0])[:, None, None], jnp.maximum(targets, 0).astype(jnp.float32)


def loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  w, y = _weights(targets, mask)
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0].astype(jnp.float32), y)
  balance = y * POS_WEIGHT + (1.0 - y) * (1.0 - POS_WEIGHT)
  return jnp.sum(bce * balance * w) / jnp.maximum(jnp.sum(w), 1.0)


def stats(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None, *,
          max_dist: float = MAX_DIST_PASCAL) -> dict[str, jnp.ndarray]:
  """Histograms over probability bins [NUM_BINS]: predicted pixels, predicted pixels near a ground-truth boundary,
  ground-truth pixels by the best probability within reach; the ground-truth count; the loss sum."""
  w, y = _weights(targets, mask)
  z = logits[..., 0].astype(jnp.float32)
  r = radius(z.shape[1], z.shape[2], max_dist)
  p = jnp.where(w > 0, jax.nn.sigmoid(z), 0.0)  # ignored pixels / unlabelled images predict nothing.
  gt = y * w
  near_gt = (disk_max(gt, r) > 0).astype(jnp.float32)
  reach = jnp.maximum(disk_max(p, r), 0.0)

  def hist(values, weights):
    bins = jnp.clip(jnp.floor(values * NUM_BINS).astype(jnp.int32), 0, NUM_BINS - 1).reshape(-1)
    return jax.ops.segment_sum(weights.reshape(-1), bins, num_segments=NUM_BINS)
  bce = optax.sigmoid_binary_cross_entropy(z, y)
  balance = y * POS_WEIGHT + (1.0 - y) * (1.0 - POS_WEIGHT)
  return {"pred_hist": hist(p, w), "pred_match_hist": hist(p, w * near_gt), "gt_match_hist": hist(reach, gt),
          "gt_count": jnp.sum(gt), "loss_sum": jnp.sum(bce * balance * w), "count": jnp.sum(w)}


def _suffix(h):
  return np.cumsum(np.asarray(h, np.float64)[::-1])[::-1][1:]  # count of values >= k / NUM_BINS, k = 1..


def curves(s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(thresholds k / NUM_BINS, precision, recall) for k = 1..NUM_BINS-1."""
  pred, pred_ok, gt_ok = _suffix(s["pred_hist"]), _suffix(s["pred_match_hist"]), _suffix(s["gt_match_hist"])
  n_gt = float(s["gt_count"])
  precision = np.where(pred > 0, pred_ok / np.where(pred > 0, pred, 1.0), 0.0)
  recall = gt_ok / n_gt if n_gt > 0 else np.zeros_like(gt_ok)
  return np.arange(1, NUM_BINS) / NUM_BINS, precision, recall


def finalize(s: dict) -> dict[str, float]:
  t, p, r = curves(s)
  denom = p + r
  f = np.where(denom > 0, 2 * p * r / np.where(denom > 0, denom, 1.0), 0.0)
  k = int(np.argmax(f))
  return {"ods_f": float(f[k]), "ods_threshold": float(t[k]), "precision": float(p[k]), "recall": float(r[k]),
          "loss": float(s["loss_sum"]) / max(float(s["count"]), 1.0)}


check_shapes = shapes.single_channel_map



TASK_KINDS.register("boundary", sys.modules[__name__])
