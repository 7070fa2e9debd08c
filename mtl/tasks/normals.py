"""Surface normals: L1 loss on unit vectors; angular error in degrees (mean, median, RMSE, % within 11.25 / 22.5 /
30 degrees), the metrics of Eigen & Fergus (2015) used by the NYUDv2 / PASCAL-Context multi-task papers.

outputs: float [B, H, W, 3], any scale (normalised per pixel here); targets: float [B, H, W, 3] unit normals.
A pixel is valid when its target has norm >= 0.5: the zero vectors PASCAL-Context's distilled normals carry outside
the classes NYUD knows, and the zero vectors of padding, are ignored. mask: float [B] or None.

The angle is 2 * atan2(|p - g|, |p + g|) (accurate near 0 and 180 degrees, as in InvPT's NormalsMeter). The median
is read from a histogram of `BIN_DEG`-degree bins (summable across batches), linearly interpolated inside its bin:
it is exact to within one bin.
"""
from __future__ import annotations

import sys
import jax
import jax.numpy as jnp
import numpy as np

from mtl.tasks.masking import sample_mask
from mtl.tasks.registry import TASK_KINDS

METRICS = ("mean", "median", "rmse", "within_11.25", "within_22.5", "within_30", "loss")
HEAD = "dense"  # the head family that predicts this kind (mtl.models.registry.HEADS)
WITHIN_DEG = {"11.25": 11.25, "22.5": 22.5, "30": 30.0}
BIN_DEG = 0.05
NUM_BINS = int(round(180.0 / BIN_DEG))
_EPS = 1e-12


def unit(v: jnp.ndarray) -> jnp.ndarray:
  """v / |v| over the last axis (zero vectors stay zero); scale-invariant (v is first divided by max |v_i|, so
  vectors of norm 1e-30 or 1e30 in float32 neither underflow nor overflow)."""
  m = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
  v = jnp.where(m > 0, v / jnp.where(m > 0, m, 1.0), 0.0)
  n = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
  return v / jnp.maximum(n, _EPS)


def _valid(targets, mask):
  t = targets.astype(jnp.float32)
  ok = (jnp.sum(t * t, axis=-1) >= 0.25).astype(jnp.float32)
  return ok * sample_mask(mask, t.shape[0])[:, None, None], t


def angle_deg(outputs: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Angle in degrees [B, H, W] between the normalised prediction and the normalised target."""
  p, g = unit(outputs.astype(jnp.float32)), unit(targets.astype(jnp.float32))
  return jnp.degrees(2.0 * jnp.arctan2(jnp.linalg.norm(p - g, axis=-1), jnp.linalg.norm(p + g, axis=-1)))


def loss(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean over valid pixels and the 3 components of |unit(prediction) - target| (InvPT's NormalsLoss)."""
  w, t = _valid(targets, mask)
  err = jnp.sum(jnp.abs(unit(outputs.astype(jnp.float32)) - t), axis=-1) / 3.0
  return jnp.sum(err * w) / jnp.maximum(jnp.sum(w), 1.0)


def stats(outputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  """Summable: angle sum / squared sum, counts within each threshold, angle histogram [NUM_BINS], loss sum."""
  w, t = _valid(targets, mask)
  a = angle_deg(outputs, t)
  bins = jnp.clip(jnp.floor(a / BIN_DEG).astype(jnp.int32), 0, NUM_BINS - 1)
  hist = jax.ops.segment_sum(w.reshape(-1), bins.reshape(-1), num_segments=NUM_BINS)
  l1 = jnp.sum(jnp.abs(unit(outputs.astype(jnp.float32)) - t), axis=-1) / 3.0
  out = {"angle_sum": jnp.sum(a * w), "angle_sq_sum": jnp.sum(a * a * w), "hist": hist, "count": jnp.sum(w),
         "loss_sum": jnp.sum(l1 * w)}
  for name, d in WITHIN_DEG.items():
    out[f"within_{name}"] = jnp.sum((a < d) * w)
  return out


def median_from_histogram(hist: np.ndarray, bin_width: float) -> float:
  """Median of values binned into [k * bin_width, (k + 1) * bin_width), interpolated linearly inside the bin."""
  hist = np.asarray(hist, np.float64)
  n = hist.sum()
  if n <= 0:
    return float("nan")
  cum = np.cumsum(hist)
  k = int(np.searchsorted(cum, n / 2.0))
  before = cum[k - 1] if k else 0.0
  return float((k + (n / 2.0 - before) / hist[k]) * bin_width)


def finalize(s: dict) -> dict[str, float]:
  n = float(s["count"])
  if n <= 0:
    return {m: float("nan") for m in METRICS}
  out = {"mean": float(s["angle_sum"]) / n, "median": median_from_histogram(s["hist"], BIN_DEG),
         "rmse": float(np.sqrt(float(s["angle_sq_sum"]) / n)), "loss": float(s["loss_sum"]) / n}
  for name in WITHIN_DEG:
    out[f"within_{name}"] = 100.0 * float(s[f"within_{name}"]) / n
  return out


def check_shapes(outputs_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  if len(outputs_shape) != 4 or outputs_shape[-1] != 3:
    return f"expected outputs [B, H, W, 3], got {outputs_shape}"
  if tuple(targets_shape) != tuple(outputs_shape):
    return f"expected targets [B, H, W, 3] = {outputs_shape}, got {targets_shape}"
  return None


TASK_KINDS.register("normals", sys.modules[__name__])
