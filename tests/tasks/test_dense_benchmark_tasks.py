"""Normals, saliency, human parts and boundary metrics against hand-computed cases and float64 references."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mtl import tasks
from mtl.tasks import boundary, human_parts, normals, saliency, semseg


def _logit(p):
  p = np.asarray(p, np.float64)
  return np.log(p / (1 - p)).astype(np.float32)


def _sum_stats(*stats):
  out = stats[0]
  for s in stats[1:]:
    out = {k: np.asarray(out[k]) + np.asarray(s[k]) for k in out}
  return out


# ---------------------------------------------------------------- normals
def _normals_case(scale):
  angles = np.array([0.0, 10.0, 20.0, 45.0, 90.0])
  a = np.radians(angles)
  pred = np.stack([np.sin(a), np.zeros(5), np.cos(a)], -1) * scale
  pred = np.concatenate([pred, [[1.0, 0.0, 0.0]]])  # 6th pixel: invalid target (zero vector), must be ignored.
  gt = np.concatenate([np.tile([0.0, 0.0, 1.0], (5, 1)), [[0.0, 0.0, 0.0]]])
  return angles, pred.reshape(1, 1, 6, 3).astype(np.float32), gt.reshape(1, 1, 6, 3).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 3.0, 1e-30, 1e30])
def test_normals_hand_computed_angles(scale):
  angles, pred, gt = _normals_case(scale)
  m = normals.finalize(normals.stats(pred, gt))
  assert m["mean"] == pytest.approx(angles.mean(), abs=2e-3)
  assert m["rmse"] == pytest.approx(math.sqrt((angles ** 2).mean()), abs=2e-3)
  assert abs(m["median"] - 20.0) <= normals.BIN_DEG  # exact to one histogram bin.
  assert m["within_11.25"] == pytest.approx(40.0)
  assert m["within_22.5"] == pytest.approx(60.0)
  assert m["within_30"] == pytest.approx(60.0)
  unit = pred[0, 0, :5] / np.linalg.norm(pred[0, 0, :5].astype(np.float64), axis=-1, keepdims=True)
  expect = np.abs(unit - gt[0, 0, :5]).sum(-1).mean() / 3
  assert float(normals.loss(pred, gt)) == pytest.approx(expect, rel=1e-5)


def test_normals_opposite_and_identical_are_180_and_0_degrees():
  g = np.array([0.6, 0.0, 0.8], np.float32)
  pred = np.stack([g, -g, g * 1e-3]).reshape(1, 1, 3, 3)
  gt = np.broadcast_to(g, (1, 1, 3, 3))
  a = np.asarray(normals.angle_deg(pred, gt))[0, 0]
  np.testing.assert_allclose(a, [0.0, 180.0, 0.0], atol=1e-4)


def test_normals_median_matches_numpy_on_many_pixels_and_stats_sum_over_batches():
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
  gt /= np.linalg.norm(gt, axis=-1, keepdims=True)
  pred = (gt + 0.4 * rng.normal(size=gt.shape)).astype(np.float32)
  mask = np.array([1, 1, 0, 1], np.float32)
  s = _sum_stats(normals.stats(pred[:2], gt[:2], mask[:2]), normals.stats(pred[2:], gt[2:], mask[2:]))
  m = normals.finalize(s)
  p64 = pred.astype(np.float64) / np.linalg.norm(pred, axis=-1, keepdims=True)
  ref = np.degrees(np.arccos(np.clip((p64 * gt).sum(-1), -1, 1)))[mask > 0].ravel()
  assert m["mean"] == pytest.approx(ref.mean(), abs=1e-3)
  assert abs(m["median"] - np.median(ref)) <= normals.BIN_DEG
  assert m["within_22.5"] == pytest.approx(100 * (ref < 22.5).mean())


def test_normals_nothing_valid_gives_nan_metrics_and_zero_loss():
  z = np.zeros((1, 2, 2, 3), np.float32)
  assert float(normals.loss(z + 1, z)) == 0.0
  assert math.isnan(normals.finalize(normals.stats(z + 1, z))["mean"])


# ---------------------------------------------------------------- saliency
def test_saliency_max_f_hand_computed():
  # probabilities 0.9, 0.6, 0.7, 0.2 (+ an ignored pixel at 0.99); truth 1, 1, 0, 0.
  p = np.array([0.9, 0.6, 0.7, 0.2, 0.99])
  y = np.array([1, 1, 0, 0, -1])
  m = saliency.finalize(saliency.stats(_logit(p).reshape(1, 1, 5, 1), y.reshape(1, 1, 5)))
  # t in (0.7, 0.9]: P=1, R=1/2 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125 (best); first such threshold is 0.75.
  assert m["max_f"] == pytest.approx(0.8125, rel=1e-6)
  assert m["best_threshold"] == pytest.approx(0.75)
  # IoU of the salient region: best at t in (0.2, 0.6]: tp=2, pred=3 -> 2 / 3.
  assert m["max_iou"] == pytest.approx(2 / 3)


def test_saliency_max_f_matches_bruteforce_reference():
  rng = np.random.default_rng(1)
  p = rng.uniform(0.001, 0.999, size=(3, 6, 7))
  y = (rng.uniform(size=p.shape) < 0.3).astype(np.int32)
  y[0, 0, :3] = -1
  m = saliency.finalize(saliency.stats(_logit(p)[..., None], y))
  best = 0.0
  for t in np.arange(1, 20) / 20:
    pr = (p >= t) & (y >= 0)
    tp, pp, ap = (pr & (y == 1)).sum(), pr.sum(), (y == 1).sum()
    prec, rec = (tp / pp if pp else 0.0), tp / ap
    best = max(best, 1.3 * prec * rec / (0.3 * prec + rec) if prec + rec else 0.0)
  assert m["max_f"] == pytest.approx(best, rel=1e-9)


def test_saliency_balanced_loss():
  z = np.array([[2.0, -1.0, 0.5, 3.0]], np.float32).reshape(1, 1, 4, 1)
  y = np.array([1, 0, 0, -1]).reshape(1, 1, 4)
  bce = np.array([math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))])
  w_pos = 2 / 3  # fraction of negatives among the 3 valid pixels.
  expect = (w_pos * bce[0] + (1 - w_pos) * (bce[1] + bce[2])) / 3
  assert float(saliency.loss(z, y)) == pytest.approx(expect, rel=1e-6)


# ---------------------------------------------------------------- human parts
def test_human_parts_only_images_with_people_count():
  # image 0 (person): truth [0, 1, 1, 2], prediction [0, 1, 2, 2]; image 1 (no person): anything.
  logits = np.full((2, 1, 4, 7), -5.0, np.float32)
  for i, c in enumerate([0, 1, 2, 2]):
    logits[0, 0, i, c] = 5.0
  logits[1, 0, :, 3] = 5.0
  y = np.array([[[0, 1, 1, 2]], [[0, 0, 0, 0]]])
  has_person = np.array([1.0, 0.0], np.float32)
  m = human_parts.finalize(human_parts.stats(logits, y, has_person))
  # IoU: background 1/1, head 1/2, torso 1/2 -> 2/3; class 3 (predicted only on the person-free image) absent.
  assert m["miou"] == pytest.approx(2 / 3)
  assert m["pixel_accuracy"] == pytest.approx(3 / 4)
  assert float(human_parts.loss(logits, y, np.array([0.0, 0.0]))) == 0.0


def test_semseg_ignore_label_pixels_do_not_count():
  logits = np.zeros((1, 1, 3, 2), np.float32)
  logits[0, 0, :, 1] = 1.0
  y = np.array([[[1, -1, 0]]])
  m = semseg.finalize(semseg.stats(logits, y))
  assert m["pixel_accuracy"] == pytest.approx(0.5)


# ---------------------------------------------------------------- boundary
def test_disk_max_matches_bruteforce():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 9, 11)).astype(np.float32)
  for r in (1, 2, 3):
    got = np.asarray(boundary.disk_max(jnp.asarray(x), r))
    ref = np.full_like(x, -np.inf)
    for i in range(9):
      for j in range(11):
        for di in range(-r, r + 1):
          for dj in range(-r, r + 1):
            if di * di + dj * dj <= r * r and 0 <= i + di < 9 and 0 <= j + dj < 11:
              ref[:, i, j] = np.maximum(ref[:, i, j], x[:, i + di, j + dj])
    np.testing.assert_array_equal(got, ref)


def test_boundary_ods_f_hand_computed():
  gt = np.zeros((1, 7, 7), np.int32)
  gt[0, :, 3] = 1  # a vertical boundary, 7 pixels.
  p = np.full((1, 7, 7), 0.001)
  p[0, :4, 4] = 0.9  # 4 hits one pixel off the boundary (within r = 1).
  p[0, 6, 6] = 0.85  # a false positive 3 pixels away.
  p[0, 0, 0] = 0.8  # another.
  assert boundary.radius(7, 7, boundary.MAX_DIST_PASCAL) == 1
  m = boundary.finalize(boundary.stats(_logit(p)[..., None], gt))
  # best at t in (0.85, 0.9]: P = 4/4, R = 4/7 (ground-truth rows 0-3 are recovered) -> F = 8/11.
  assert m["ods_f"] == pytest.approx(8 / 11)
  assert m["ods_threshold"] == pytest.approx(0.86)
  assert m["precision"] == pytest.approx(1.0) and m["recall"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("max_dist", [boundary.MAX_DIST_PASCAL, 0.2])
def test_boundary_curves_match_bruteforce_matching(max_dist):
  rng = np.random.default_rng(3)
  p = rng.uniform(0.001, 0.999, size=(2, 10, 12)) ** 3
  gt = (rng.uniform(size=p.shape) < 0.15).astype(np.int32)
  gt[1, 0, :] = -1
  s = _sum_stats(boundary.stats(_logit(p[:1])[..., None], gt[:1], max_dist=max_dist),
                 boundary.stats(_logit(p[1:])[..., None], gt[1:], max_dist=max_dist))
  t, prec, rec = boundary.curves(s)
  r = boundary.radius(10, 12, max_dist)
  yy, xx = np.mgrid[:10, :12]
  for k in (5, 30, 50, 80):
    pred = (p >= t[k]) & (gt >= 0)
    tp_pred, n_pred, tp_gt, n_gt = 0, 0, 0, 0
    for b in range(2):
      gpts = np.argwhere(gt[b] == 1)
      ppts = np.argwhere(pred[b])
      d = np.sqrt(((ppts[:, None, :] - gpts[None, :, :]) ** 2).sum(-1)) if len(ppts) and len(gpts) else None
      n_pred += len(ppts)
      n_gt += len(gpts)
      if d is not None:
        tp_pred += int((d.min(1) <= r).sum())
        tp_gt += int((d.min(0) <= r).sum())
    del yy, xx
    assert prec[k] == pytest.approx(tp_pred / n_pred if n_pred else 0.0)
    assert rec[k] == pytest.approx(tp_gt / n_gt)
    yy, xx = np.mgrid[:10, :12]


def test_boundary_loss_weights_positives_095():
  z = np.array([1.0, -2.0, 0.0], np.float32).reshape(1, 1, 3, 1)
  y = np.array([1, 0, -1]).reshape(1, 1, 3)
  expect = (0.95 * math.log1p(math.exp(-1.0)) + 0.05 * math.log1p(math.exp(-2.0))) / 2
  assert float(boundary.loss(z, y)) == pytest.approx(expect, rel=1e-6)


def test_boundary_nyud_kind_uses_the_wider_tolerance():
  assert tasks.get_kind("boundary_nyud").stats.keywords["max_dist"] == boundary.MAX_DIST_NYUD
  assert boundary.radius(480, 640, boundary.MAX_DIST_NYUD) == 9
  assert boundary.radius(512, 512, boundary.MAX_DIST_PASCAL) == 5
