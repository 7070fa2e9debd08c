"""Slimmable heads: pooling of every feature layout, reference MLP, dense output shapes, factory."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models import heads
from mtl.tasks.base import TaskSpec


def random_variables(module, *args, seed=0, scale=0.3, **kw):
  """Variables with the shapes `module.init` would create, filled with numpy normals (no init compile)."""
  shapes = jax.eval_shape(lambda k: module.init(k, *args, **kw), jax.random.PRNGKey(0))
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.randn(*s.shape), s.dtype), shapes)


def test_classification_head_matches_reference_for_all_layouts():
  rng = np.random.RandomState(0)
  fmap = rng.randn(2, 3, 3, 16).astype(np.float32)
  head = heads.ClassificationHead(num_outputs=5, hidden_dim=16)
  v = random_variables(head, fmap)
  p = jax.tree.map(np.asarray, v["params"])
  pooled = fmap[..., :8].mean(axis=(1, 2))  # encoder at half width
  assert head.active_hidden(0.25) == 8  # ceil(4) rounded up to a multiple of 8
  hid = np.maximum(pooled @ p["hidden"]["kernel"][:8, :8] + p["hidden"]["bias"][:8], 0)
  ref = hid @ p["out"]["kernel"][:8] + p["out"]["bias"]
  for feats in (fmap[..., :8], fmap[..., :8].reshape(2, 9, 8), pooled):
    np.testing.assert_allclose(head.apply(v, feats, width=0.25), ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="head expects"):
    head.apply(v, fmap[None])


def test_dense_head_shapes_and_tokens_equal_maps():
  rng = np.random.RandomState(1)
  fmap = rng.randn(2, 4, 4, 16).astype(np.float32)
  head = heads.DenseHead(num_outputs=3, hidden_dim=16, out_hw=(12, 12))
  v = random_variables(head, fmap)
  run = jax.jit(lambda v, f, w: head.apply(v, f, width=w), static_argnums=2)
  ys = {}
  for w in (1.0, 0.5):
    ys[w] = run(v, fmap, w)
    assert ys[w].shape == (2, 12, 12, 3)
    np.testing.assert_allclose(run(v, fmap.reshape(2, 16, 16), w), ys[w], rtol=1e-5, atol=1e-6)
  # Narrow width is a different (sliced) function, not a masked copy of the full one.
  assert not np.allclose(ys[0.5], ys[1.0])
  with pytest.raises(ValueError, match="square grid"):
    jax.eval_shape(lambda: head.apply(v, fmap.reshape(2, 8, 32)[..., :16][:, :7]))
  with pytest.raises(ValueError, match="allowed widths"):
    jax.eval_shape(lambda: head.apply(v, fmap, width=0.6))


def test_dense_head_narrow_gradient_leaves_rest_untouched():
  fmap = jnp.ones((1, 2, 2, 16))
  head = heads.DenseHead(num_outputs=2, hidden_dim=16, out_hw=(4, 4))
  v = random_variables(head, fmap)
  g = jax.jit(jax.grad(lambda p: jnp.sum(head.apply({"params": p}, fmap[..., :8], width=0.5) ** 2)))(
      v["params"])
  k = np.asarray(g["conv0"]["kernel"])
  assert np.all(k[:, :, 8:] == 0) and np.all(k[..., 8:] == 0) and np.any(k[:, :, :8, :8] != 0)


def test_build_head():
  cfg = ml_collections.ConfigDict({"hidden_dim": 32, "widths": [0.5, 1.0]})
  h = heads.build_head(TaskSpec("a", "classification", 10), cfg)
  assert isinstance(h, heads.ClassificationHead) and h.hidden_dim == 32 and h.widths == (0.5, 1.0)
  assert isinstance(heads.build_head(TaskSpec("b", "binary", 1), cfg), heads.ClassificationHead)
  d = heads.build_head(TaskSpec("s", "semseg", 4), cfg, out_hw=(8, 8))
  assert isinstance(d, heads.DenseHead) and d.out_hw == (8, 8)
  with pytest.raises(ValueError, match="out_hw"):
    heads.build_head(TaskSpec("d", "depth", 1), cfg)
  with pytest.raises(ValueError, match="kind 'lm' declares no HEAD and config.model.head.name is not set"):
    heads.build_head(TaskSpec("l", "lm", 100), cfg)
  with pytest.raises(ValueError, match="unknown head 'conv_head'; known: classification, dense"):
    heads.build_head(TaskSpec("s", "semseg", 4), ml_collections.ConfigDict({"name": "conv_head"}), out_hw=(8, 8))
  named = heads.build_head(TaskSpec("s", "semseg", 4), ml_collections.ConfigDict({"name": "classification"}))
  assert isinstance(named, heads.ClassificationHead)  # config.model.head.name overrides the kind's HEAD


@pytest.mark.parametrize("hw_in,hw_out", [((3, 4), (9, 10)), ((4, 4), (4, 4)), ((2, 5), (7, 5))])
def test_resize_bilinear_matches_jax_image_resize_when_upsampling(hw_in, hw_out):
  x = np.random.RandomState(3).randn(2, *hw_in, 3).astype(np.float32)
  ref = jax.image.resize(x, (2, *hw_out, 3), method="bilinear")
  np.testing.assert_allclose(heads.resize_bilinear(jnp.asarray(x), hw_out), ref, rtol=1e-5, atol=1e-5)
