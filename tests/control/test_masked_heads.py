"""A masked (training) head equals its sliced (deployed) head: outputs and parameter gradients."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models.heads import ClassificationHead, DenseHead, hidden_mask
from mtl.models.multitask import build_multitask
from mtl.tasks.base import TaskSpec

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def _feats(shape, scale=1.0):
  return jnp.asarray(np.random.default_rng(0).normal(size=shape) * scale, jnp.float32)


@pytest.mark.parametrize("head,shape", [
    (DenseHead(num_outputs=3, hidden_dim=32, out_hw=(8, 8), widths=WIDTHS), (2, 4, 4, 16)),
    (ClassificationHead(num_outputs=5, hidden_dim=24, widths=WIDTHS), (3, 16)),
])
@pytest.mark.parametrize("scale", [1.0, 1e3])  # badly scaled features too
def test_masked_head_equals_sliced_head(head, shape, scale):
  x = _feats(shape, scale)
  params = head.init(jax.random.PRNGKey(1), x)
  # Perturb the norm scales / biases away from 1 / 0, so masked-out channels would leak if not zeroed.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  for w in WIDTHS:
    mask = jnp.asarray(hidden_mask(head, w))
    assert int(mask.sum()) == head.active_hidden(w) and not np.asarray(mask[head.active_hidden(w):]).any()
    sliced = head.apply(params, x, width=w)
    masked = head.apply(params, x, mask=mask)
    tol = 1e-5 * float(jnp.max(jnp.abs(sliced))) + 1e-6
    np.testing.assert_allclose(np.asarray(masked), np.asarray(sliced), atol=tol, rtol=1e-5)
    g_s = jax.grad(lambda p: jnp.sum(jnp.sin(head.apply(p, x, width=w))))(params)
    g_m = jax.grad(lambda p: jnp.sum(jnp.sin(head.apply(p, x, mask=mask))))(params)
    for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g_m)):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4 * (float(jnp.max(jnp.abs(a))) + 1e-6))


def test_multitask_model_masked_forward_equals_sliced_forward():
  cfg = ml_collections.ConfigDict({"encoder": {"name": "conv", "stage_channels": (8, 16), "convs_per_stage": 1,
                                               "widths": WIDTHS},
                                   "head": {"hidden_dim": 16, "widths": WIDTHS}})
  tasks = (TaskSpec("seg", "semseg", 4), TaskSpec("dep", "depth", 1))
  model = build_multitask(cfg, tasks, (8, 8, 1))
  x = _feats((2, 8, 8, 1))
  params = model.init(jax.random.PRNGKey(0), x)
  tables = model.head_mask_tables(WIDTHS)
  assert {k: v.shape for k, v in tables.items()} == {"seg": (4, 16), "dep": (4, 16)}
  masked_fn = jax.jit(lambda p, i, j: model.apply(p, x, encoder_width=0.5,
                                                  head_masks={"seg": jnp.asarray(tables["seg"])[i],
                                                              "dep": jnp.asarray(tables["dep"])[j]}))
  for i, ws in enumerate(WIDTHS):
    for j, wd in enumerate(WIDTHS):
      sliced = model.apply(params, x, encoder_width=0.5, head_widths={"seg": ws, "dep": wd})
      masked = masked_fn(params, i, j)  # one compilation for every head width
      for t in sliced:
        np.testing.assert_allclose(np.asarray(masked[t]), np.asarray(sliced[t]), atol=1e-5, rtol=1e-5)
  assert masked_fn._cache_size() == 1


def test_mask_errors_are_named():
  head = DenseHead(num_outputs=1, hidden_dim=16, out_hw=(4, 4), widths=WIDTHS)
  x = _feats((1, 2, 2, 8))
  params = head.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="mask must have shape"):
    head.apply(params, x, mask=jnp.ones((8,)))
  with pytest.raises(ValueError, match="runs at full width"):
    head.apply(params, x, width=0.5, mask=jnp.ones((16,)))
  with pytest.raises(ValueError, match="no slimmable hidden layer"):
    hidden_mask(object(), 0.5)
