"""Output distillation against plain float64 references: KL for softmax kinds, squared distance otherwise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

from mtl.control.output_distill import (bernoulli_distill, distance_of, kl_distill, l2_distill,
                                         output_distill_losses)
from mtl.tasks.base import TaskSpec


def _kl_ref(s, t, mask=None):
  ls, lt = log_softmax(s.astype(np.float64), -1), log_softmax(t.astype(np.float64), -1)
  per = np.sum(np.exp(lt) * (lt - ls), -1)
  w = np.ones(s.shape[0]) if mask is None else mask.astype(np.float64)
  w = np.broadcast_to(w.reshape((-1,) + (1,) * (per.ndim - 1)), per.shape)
  return np.sum(per * w) / max(np.sum(w), 1.0)


@pytest.mark.parametrize("scale", [1.0, 50.0, 1e-4])  # badly scaled logits (near one-hot and near uniform)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 3, 7)])
def test_kl_matches_float64_reference(scale, shape):
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=shape) * scale, rng.normal(size=shape) * scale
  mask = np.array([1.0, 0.0] + [1.0] * (shape[0] - 2))
  for m in (None, mask):
    got = float(kl_distill(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32),
                           None if m is None else jnp.asarray(m)))
    np.testing.assert_allclose(got, _kl_ref(s.astype(np.float32), t.astype(np.float32), m), rtol=2e-4, atol=1e-6)
  assert abs(float(kl_distill(jnp.asarray(t, jnp.float32), jnp.asarray(t, jnp.float32)))) < 1e-6


def test_l2_matches_reference_and_teacher_gets_no_gradient():
  rng = np.random.default_rng(1)
  s, t = rng.normal(size=(3, 4, 4, 1)) * 1e3, rng.normal(size=(3, 4, 4, 1))
  want = np.mean(np.sum((s - t) ** 2, -1))
  np.testing.assert_allclose(float(l2_distill(jnp.asarray(s), jnp.asarray(t))), want, rtol=1e-5)
  g_t = jax.grad(lambda tt: l2_distill(jnp.asarray(s), tt))(jnp.asarray(t))
  g_t2 = jax.grad(lambda tt: kl_distill(jnp.asarray(s), tt))(jnp.asarray(t))
  assert not np.asarray(g_t).any() and not np.asarray(g_t2).any()  # stop-gradient on the teacher
  # Zero mask everywhere: a finite zero, not NaN.
  assert float(l2_distill(jnp.asarray(s), jnp.asarray(t), jnp.zeros(3))) == 0.0


def _bernoulli_ref(s, t, mask=None):
  """float64 KL(Bern(sigmoid(t)) || Bern(sigmoid(s))) summed over the last axis, (masked) mean elsewhere."""
  s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
  log_sig = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
  p = 1.0 / (1.0 + np.exp(-t))
  kl = np.sum(p * (log_sig(t) - log_sig(s)) + (1 - p) * (log_sig(-t) - log_sig(-s)), axis=-1)
  w = np.ones(kl.shape[0]) if mask is None else np.asarray(mask, np.float64)
  w = np.broadcast_to(w.reshape((-1,) + (1,) * (kl.ndim - 1)), kl.shape)
  return float(np.sum(kl * w) / max(np.sum(w), 1.0))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_bernoulli_matches_float64_reference_and_is_bounded_by_probabilities(scale):
  rng = np.random.default_rng(4)
  s = (scale * rng.normal(size=(3, 5, 5, 1))).astype(np.float32)
  t = (scale * rng.normal(size=(3, 5, 5, 1))).astype(np.float32)
  m = np.array([1.0, 0.0, 1.0], np.float32)
  got = float(bernoulli_distill(jnp.asarray(s), jnp.asarray(t), jnp.asarray(m)))
  np.testing.assert_allclose(got, _bernoulli_ref(s, t, m), rtol=2e-4, atol=1e-6)
  assert np.isfinite(got)
  assert abs(float(bernoulli_distill(jnp.asarray(t), jnp.asarray(t)))) < 1e-6
  # Saturated logits that agree in probability cost ~nothing (L2 on the logits would cost 36).
  sat = float(bernoulli_distill(jnp.full((1, 1), 6.0), jnp.full((1, 1), 12.0)))
  assert 0.0 < sat < 0.02
  g_t = jax.grad(lambda tt: bernoulli_distill(jnp.asarray(s), tt))(jnp.asarray(t))
  assert not np.asarray(g_t).any()


def test_per_task_losses_pick_the_distance_of_the_kind():
  tasks = (TaskSpec("seg", "semseg", 3), TaskSpec("dep", "depth", 1), TaskSpec("edg", "edges", 1),
           TaskSpec("cls", "classification", 4))
  assert [distance_of(t.kind) for t in tasks] == ["kl", "l2", "bernoulli", "kl"]
  rng = np.random.default_rng(2)
  shapes = {"seg": (2, 4, 4, 3), "dep": (2, 4, 4, 1), "edg": (2, 4, 4, 1), "cls": (2, 4)}
  s = {k: jnp.asarray(rng.normal(size=v), jnp.float32) for k, v in shapes.items()}
  t = {k: jnp.asarray(rng.normal(size=v), jnp.float32) for k, v in shapes.items()}
  got = np.asarray(output_distill_losses(s, t, {}, tasks))
  want = [_kl_ref(np.asarray(s["seg"]), np.asarray(t["seg"])),
          np.mean((np.asarray(s["dep"], np.float64) - np.asarray(t["dep"], np.float64)) ** 2),
          _bernoulli_ref(np.asarray(s["edg"]), np.asarray(t["edg"])),
          _kl_ref(np.asarray(s["cls"]), np.asarray(t["cls"]))]
  np.testing.assert_allclose(got, want, rtol=1e-4)
  with pytest.raises(ValueError, match="differ in shape"):
    output_distill_losses({**s, "dep": s["edg"][:1]}, t, {}, tasks)
