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
    (DenseHead(num_outputs=3, hidden_dim=32, out_hw=(8, 8), widths=WIDTHS, private_output=True), (2, 4, 4, 16)),
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


@pytest.mark.parametrize("head_cfg", [{"hidden_dim": 16}, {"hidden_dim": 32, "private_output": True}])
def test_multitask_model_masked_forward_equals_sliced_forward(head_cfg):
  cfg = ml_collections.ConfigDict({"encoder": {"name": "conv", "stage_channels": (8, 16), "convs_per_stage": 1,
                                               "widths": WIDTHS},
                                   "head": {**head_cfg, "widths": WIDTHS}})
  hidden = head_cfg["hidden_dim"]
  tasks = (TaskSpec("seg", "semseg", 4), TaskSpec("dep", "depth", 1))
  model = build_multitask(cfg, tasks, (8, 8, 1))
  x = _feats((2, 8, 8, 1))
  params = model.init(jax.random.PRNGKey(0), x)
  tables = model.head_mask_tables(WIDTHS)
  assert {k: v.shape for k, v in tables.items()} == {"seg": (4, hidden), "dep": (4, hidden)}
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


def test_private_readout_is_each_widths_own_and_a_plain_einsum():
  """private_output: width w's output is its hidden units read by kernel[w] (plain float64 reference), and the
  gradient of a width's output reaches only that width's readout."""
  head = DenseHead(num_outputs=2, hidden_dim=32, out_hw=(6, 6), widths=WIDTHS, private_output=True)
  x = _feats((2, 3, 3, 8), 10.0)
  params = head.init(jax.random.PRNGKey(0), x)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(3), p.shape), params)
  k = np.asarray(params["params"]["out_private_kernel"], np.float64)
  b = np.asarray(params["params"]["out_private_bias"], np.float64)
  assert k.shape == (4, 32, 2) and b.shape == (4, 2) and "out" not in params["params"]
  for i, w in enumerate(WIDTHS):
    h = head.active_hidden(w)
    _, inter = head.apply(params, x, width=w, capture_intermediates=True)
    hidden = np.asarray(inter["intermediates"]["norm1"]["__call__"][0], np.float64)
    want = np.einsum("bhwc,co->bhwo", np.maximum(hidden, 0.0), k[i, :h]) + b[i]
    np.testing.assert_allclose(np.asarray(head.apply(params, x, width=w)), want, rtol=1e-5, atol=1e-4)
    g = jax.grad(lambda p: jnp.sum(head.apply(p, x, mask=jnp.asarray(hidden_mask(head, w)))))(params)
    gk = np.abs(np.asarray(g["params"]["out_private_kernel"])).sum(axis=(1, 2))
    assert gk[i] > 0 and all(gk[j] == 0 for j in range(4) if j != i), (w, gk)


def test_private_readout_needs_distinct_hidden_sizes_and_a_dense_head():
  head = DenseHead(num_outputs=2, hidden_dim=16, out_hw=(4, 4), widths=WIDTHS, private_output=True)
  with pytest.raises(ValueError, match="two widths with the same size"):
    head.init(jax.random.PRNGKey(0), _feats((1, 2, 2, 8)))
  from mtl.models.heads import build_classification_head
  spec = TaskSpec(name="left", kind="classification", num_outputs=10)
  with pytest.raises(ValueError, match="private_output is for dense heads"):
    build_classification_head(spec, ml_collections.ConfigDict({"private_output": True}))
