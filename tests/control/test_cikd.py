import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.control.cikd import cikd_loss


def test_matches_reference_on_leading_channels():
  rng = np.random.RandomState(0)
  s, t = rng.randn(3, 4, 4, 8).astype(np.float32), rng.randn(3, 4, 4, 16).astype(np.float32)
  ref = np.mean((s - t[..., :8]) ** 2)
  np.testing.assert_allclose(cikd_loss(s, t), ref, rtol=1e-6)
  mask = np.array([1.0, 0.0, 1.0], np.float32)
  per = ((s - t[..., :8]) ** 2).reshape(3, -1).mean(1)
  np.testing.assert_allclose(cikd_loss(s, t, mask), (per[0] + per[2]) / 2, rtol=1e-6)
  sn = s / np.linalg.norm(s, axis=-1, keepdims=True)
  tn = t[..., :8] / np.linalg.norm(t[..., :8], axis=-1, keepdims=True)
  np.testing.assert_allclose(cikd_loss(s, t, normalize=True), np.mean((sn - tn) ** 2), rtol=1e-5)


def test_teacher_gets_no_gradient():
  s, t = jnp.ones((2, 5, 4)), jnp.zeros((2, 5, 8))
  gs, gt = jax.grad(cikd_loss, argnums=(0, 1))(s, t)
  assert np.all(np.asarray(gt) == 0)
  np.testing.assert_allclose(gs, 2 * np.ones((2, 5, 4)) / 40, rtol=1e-6)


def test_bad_shapes():
  with pytest.raises(ValueError, match="fewer than"):
    cikd_loss(jnp.ones((2, 8)), jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="outside the channel axis"):
    cikd_loss(jnp.ones((2, 3, 4)), jnp.ones((2, 5, 4)))
  with pytest.raises(ValueError, match="mask"):
    cikd_loss(jnp.ones((2, 4)), jnp.ones((2, 4)), jnp.ones((3,)))
