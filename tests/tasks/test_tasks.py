"""Task losses and metrics against plain numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl import tasks
from mtl.tasks import binary, classification, depth, edges, lm, semseg
from mtl.tasks.base import TaskSpec, select_tasks


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _sigmoid_bce(z, y):
  return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


RNG = np.random.default_rng(0)


def test_classification_loss_and_accuracy_with_mask():
  logits = RNG.normal(size=(6, 4)).astype(np.float32)
  y = np.array([0, 1, 2, 3, 0, 1])
  mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
  ce = -_log_softmax(logits)[np.arange(6), y]
  np.testing.assert_allclose(classification.loss(logits, y, mask), (ce * mask).sum() / mask.sum(), rtol=1e-6)
  s = classification.stats(logits, y, mask)
  expect_acc = ((logits.argmax(-1) == y) * mask).sum() / mask.sum()
  np.testing.assert_allclose(classification.finalize(s)["accuracy"], expect_acc, rtol=1e-6)


def test_masked_out_sample_has_exactly_zero_gradient():
  logits = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  y = jnp.array([0, 1, 2, 0])
  mask = jnp.array([1.0, 0.0, 1.0, 1.0])
  g = jax.grad(lambda z: classification.loss(z, y, mask))(logits)
  assert np.all(np.asarray(g[1]) == 0.0)
  assert np.any(np.asarray(g[0]) != 0.0)


def test_all_masked_gives_zero_loss_not_nan():
  logits = jnp.ones((3, 2))
  loss = classification.loss(logits, jnp.zeros(3, jnp.int32), jnp.zeros(3))
  assert float(loss) == 0.0
  assert np.all(np.isfinite(jax.grad(lambda z: classification.loss(z, jnp.zeros(3, jnp.int32), jnp.zeros(3)))(logits)))


def test_binary_loss_and_f1():
  z = RNG.normal(size=(8, 1)).astype(np.float32)
  y = np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32)
  np.testing.assert_allclose(binary.loss(z, y), _sigmoid_bce(z[:, 0], y).mean(), rtol=1e-6)
  pred = (z[:, 0] > 0).astype(np.float32)
  tp, fp, fn = (pred * y).sum(), (pred * (1 - y)).sum(), ((1 - pred) * y).sum()
  m = binary.finalize(binary.stats(z, y))
  np.testing.assert_allclose(m["f1"], 2 * tp / (2 * tp + fp + fn), rtol=1e-6)
  np.testing.assert_allclose(m["accuracy"], (pred == y).mean(), rtol=1e-6)


def test_semseg_miou_matches_hand_count():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  pred = np.array([[0, 1], [1, 2]])
  truth = np.array([[[0, 1], [2, 2]]])
  logits[0, np.arange(2)[:, None], np.arange(2)[None, :], pred] = 5.0
  m = semseg.finalize(semseg.stats(logits, truth))
  # class 0: I=1 U=1; class 1: I=1 U=2; class 2: I=1 U=2.
  np.testing.assert_allclose(m["miou"], (1 + 0.5 + 0.5) / 3, rtol=1e-6)
  np.testing.assert_allclose(m["pixel_accuracy"], 3 / 4, rtol=1e-6)
  ce = -_log_softmax(logits[0])[np.arange(2)[:, None], np.arange(2)[None, :], truth[0]]
  np.testing.assert_allclose(semseg.loss(logits, truth), ce.mean(), rtol=1e-6)


def test_semseg_ignores_negative_labels():
  logits = RNG.normal(size=(1, 2, 2, 3)).astype(np.float32)
  truth = np.array([[[0, -1], [2, -1]]])
  ce = -_log_softmax(logits[0])
  expect = (ce[0, 0, 0] + ce[1, 0, 2]) / 2
  np.testing.assert_allclose(semseg.loss(logits, truth), expect, rtol=1e-6)


def test_depth_errors_skip_invalid_pixels():
  out = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]], np.float32)
  t = np.array([[[1.5, -1.0], [2.0, np.inf]]], np.float32)
  m = depth.finalize(depth.stats(out, t))
  np.testing.assert_allclose(m["abs_err"], (0.5 + 1.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["rmse"], np.sqrt((0.25 + 1.0) / 2), rtol=1e-6)
  np.testing.assert_allclose(depth.loss(out, t), 0.75, rtol=1e-6)


def test_edges_balanced_loss_and_f1():
  z = RNG.normal(size=(2, 3, 3, 1)).astype(np.float32)
  y = (RNG.random((2, 3, 3)) > 0.7).astype(np.float32)
  pos = y.mean()
  w = y * (1 - pos) + (1 - y) * pos
  np.testing.assert_allclose(edges.loss(z, y), 2 * (_sigmoid_bce(z[..., 0], y) * w).mean(), rtol=1e-5)
  pred = (z[..., 0] > 0)
  tp = (pred * y).sum()
  p, r = tp / max(pred.sum(), 1), tp / max(y.sum(), 1)
  f1 = 2 * p * r / (p + r) if p + r else 0.0
  np.testing.assert_allclose(edges.finalize(edges.stats(z, y))["f1"], f1, rtol=1e-5)


def test_lm_perplexity_ignores_padding():
  logits = RNG.normal(size=(2, 3, 5)).astype(np.float32)
  t = np.array([[1, 2, -1], [0, -1, -1]])
  lp = _log_softmax(logits)
  nll = -(lp[0, 0, 1] + lp[0, 1, 2] + lp[1, 0, 0]) / 3
  m = lm.finalize(lm.stats(logits, t))
  np.testing.assert_allclose(m["loss"], nll, rtol=1e-5)
  np.testing.assert_allclose(m["perplexity"], np.exp(nll), rtol=1e-5)
  np.testing.assert_allclose(lm.loss(logits, t), nll, rtol=1e-5)


def test_task_spec_validation_and_selection():
  with pytest.raises(ValueError, match="task 'a': unknown task kind 'no_such_kind'; known: .*classification"):
    TaskSpec("a", "no_such_kind", 1)
  with pytest.raises(ValueError, match="num_outputs"):
    TaskSpec("a", "classification", 0)
  specs = (TaskSpec("left", "classification", 10), TaskSpec("right", "classification", 10))
  assert select_tasks(specs, ["right"]) == specs[1:]
  assert select_tasks(specs, None) == specs
  with pytest.raises(ValueError, match=r"unknown task name\(s\) \['middle'\]"):
    select_tasks(specs, ["middle"])
  with pytest.raises(ValueError, match="unknown task kind"):
    tasks.get_kind("nope")


@pytest.mark.parametrize("kind,shape,target_shape,n", [
    (classification, (4, 10), (4,), 10), (binary, (4, 1), (4,), 1), (semseg, (2, 8, 8, 3), (2, 8, 8), 3),
    (depth, (2, 8, 8, 1), (2, 8, 8), 1), (edges, (2, 8, 8, 1), (2, 8, 8), 1), (lm, (2, 5, 7), (2, 5), 7)])
def test_check_shapes(kind, shape, target_shape, n):
  assert kind.check_shapes(shape, target_shape, n) is None
  assert kind.check_shapes(shape, target_shape[:-1] + (target_shape[-1] + 1,), n) is not None
