"""Scalar regression task: squared-error loss and metrics against numpy, masks, shape checks."""
import jax.numpy as jnp
import numpy as np

from mtl import tasks as tasks_lib


def test_loss_stats_and_masks_match_numpy():
  kind = tasks_lib.get_kind("regression")
  out = np.array([[1e4], [-2.0], [0.5], [3.0]], np.float32)
  y = np.array([1e4 + 2.0, -2.0, 0.0, 0.0], np.float32)
  mask = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
  d = out[:, 0].astype(np.float64) - y
  np.testing.assert_allclose(kind.loss(jnp.asarray(out), jnp.asarray(y)), np.mean(d * d), rtol=1e-6)
  np.testing.assert_allclose(kind.loss(jnp.asarray(out), jnp.asarray(y), jnp.asarray(mask)),
                             np.sum(d * d * mask) / 3, rtol=1e-6)
  assert float(kind.loss(jnp.asarray(out), jnp.asarray(y), jnp.zeros(4))) == 0.0  # nothing labelled: 0, not NaN
  m = kind.finalize(kind.stats(jnp.asarray(out), jnp.asarray(y), jnp.asarray(mask)))
  np.testing.assert_allclose([m["mse"], m["mae"]], [np.sum(d * d * mask) / 3, np.sum(np.abs(d) * mask) / 3],
                             rtol=1e-6)
  assert kind.check_shapes((4, 1), (4,), 1) is None
  assert "expected outputs [B, 1]" in kind.check_shapes((4, 2), (4,), 1)
  assert "expected targets [B]" in kind.check_shapes((4, 1), (4, 1), 1)
