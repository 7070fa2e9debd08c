"""Slimmable layers: a narrow call equals the plain layer on the sliced weights, and computes less."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.nn import slimmable


def random_variables(module, *args, seed=0, scale=0.3, **kw):
  """Variables with the shapes `module.init` would create, filled with numpy normals (no init compile)."""
  shapes = jax.eval_shape(lambda k: module.init(k, *args, **kw), jax.random.PRNGKey(0))
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.randn(*s.shape), s.dtype), shapes)


def _init(module, x, **kw):
  return random_variables(module, x, **kw)


def test_scale_channels():
  assert slimmable.scale_channels(128, 1.0, 8) == 128
  assert slimmable.scale_channels(128, 0.25, 8) == 32
  assert slimmable.scale_channels(100, 0.3, 8) == 32  # ceil(30) -> 32
  assert slimmable.scale_channels(4, 0.25) == 1
  assert slimmable.scale_channels(4, 0.1, 8) == 4  # clipped to full
  with pytest.raises(ValueError, match="width"):
    slimmable.scale_channels(8, 0.0)


def test_check_width():
  assert slimmable.check_width(0.5, (0.5, 1.0)) == 0.5
  with pytest.raises(ValueError, match="not one of the allowed"):
    slimmable.check_width(0.3, (0.5, 1.0))
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    slimmable.check_width(0.5, (0.5, 1.5))
  with pytest.raises(ValueError, match="static"):
    jax.jit(lambda w: slimmable.check_width(w, (1.0,)))(1.0)


def test_dense_narrow_matches_sliced_reference():
  x = np.random.RandomState(0).randn(3, 12).astype(np.float32)
  layer = slimmable.SlimDense(10)
  v = _init(layer, x)
  v = jax.tree.map(lambda a: a + 0.1, v)  # non-zero bias
  k, b = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])
  y = layer.apply(v, x[:, :5], 4)
  np.testing.assert_allclose(y, x[:, :5] @ k[:5, :4] + b[:4], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer.apply(v, x), x @ k + b, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="initialized with 12"):
    layer.apply(v, np.ones((3, 13), np.float32))
  with pytest.raises(ValueError, match="out_features"):
    layer.apply(v, x, 11)


def test_dense_narrow_gradient_only_touches_slice():
  x = np.ones((2, 8), np.float32)
  layer = slimmable.SlimDense(6)
  v = _init(layer, x)
  g = jax.grad(lambda p: layer.apply({"params": p}, x[:, :4], 3).sum())(v["params"])
  gk = np.asarray(g["kernel"])
  assert np.all(gk[:4, :3] != 0)
  assert np.all(gk[4:] == 0) and np.all(gk[:, 3:] == 0)


def test_conv_narrow_matches_zero_padded_full_conv():
  rng = np.random.RandomState(1)
  x = rng.randn(2, 9, 9, 6).astype(np.float32)
  layer = slimmable.SlimConv(8, (3, 3), (2, 2))
  v = jax.tree.map(lambda a: a + 0.05, _init(layer, x))
  narrow = layer.apply(v, x[..., :3], 5)
  # Reference: full conv on the input with the dropped channels zeroed, output sliced.
  xz = x.copy()
  xz[..., 3:] = 0
  full = nn.Conv(8, (3, 3), (2, 2), padding="SAME").apply(
      {"params": v["params"]}, xz)
  assert narrow.shape == (2, 5, 5, 5)
  np.testing.assert_allclose(narrow, full[..., :5], rtol=1e-4, atol=1e-5)


def test_conv_narrow_costs_less():
  x = jnp.ones((2, 16, 16, 32))
  layer = slimmable.SlimConv(32)
  v = _init(layer, x)

  def flops(c):
    f = jax.jit(lambda v, x: layer.apply(v, x, c))
    return f.lower(v, x[..., :c]).compile().cost_analysis()["flops"]

  full, quarter = flops(32), flops(8)
  assert quarter < full / 10  # MACs scale with in*out: 1/16 (+ bias adds)


def test_layer_norm_matches_flax():
  x = np.random.RandomState(2).randn(4, 7, 16).astype(np.float32)
  layer = slimmable.SlimLayerNorm()
  v = jax.tree.map(lambda a: a + 0.3, _init(layer, x))
  ref = nn.LayerNorm(epsilon=1e-6).apply(
      {"params": jax.tree.map(lambda a: a[:8], v["params"])}, x[..., :8])
  np.testing.assert_allclose(layer.apply(v, x[..., :8]), ref, rtol=1e-5, atol=1e-5)


def test_group_norm_fixed_group_size_matches_flax_and_is_width_consistent():
  x = np.random.RandomState(3).randn(2, 5, 5, 32).astype(np.float32)
  layer = slimmable.SlimGroupNorm(group_size=8)
  v = jax.tree.map(lambda a: a + 0.2, _init(layer, x))
  full = layer.apply(v, x)
  ref = nn.GroupNorm(num_groups=4, epsilon=1e-5).apply({"params": v["params"]}, x)
  np.testing.assert_allclose(full, ref, rtol=1e-4, atol=1e-5)
  narrow = layer.apply(v, x[..., :16])  # the first two groups, same statistics
  np.testing.assert_allclose(narrow, full[..., :16], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="multiple of group_size"):
    layer.apply(v, x[..., :12])


def _reference_mha(x, p, h, d_out):
  q = np.einsum("bld,dnh->blnh", x, p["query_kernel"][: x.shape[-1], :h]) + p["query_bias"][:h]
  k = np.einsum("bld,dnh->blnh", x, p["key_kernel"][: x.shape[-1], :h]) + p["key_bias"][:h]
  v = np.einsum("bld,dnh->blnh", x, p["value_kernel"][: x.shape[-1], :h]) + p["value_bias"][:h]
  logits = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  o = np.einsum("bnqk,bknh->bqnh", w, v)
  return np.einsum("blnh,nhd->bld", o, p["out_kernel"][:h, :, :d_out]) + p["out_bias"][:d_out]


@pytest.mark.parametrize("heads,dim", [(4, 16), (2, 8), (1, 4)])
def test_self_attention_matches_reference(heads, dim):
  x = np.random.RandomState(4).randn(2, 6, 16).astype(np.float32)
  layer = slimmable.SlimSelfAttention(num_heads=4, head_dim=4)
  v = jax.tree.map(lambda a: a + 0.01, _init(layer, x))
  p = jax.tree.map(np.asarray, v["params"])
  y = layer.apply(v, x[..., :dim], heads, dim)
  np.testing.assert_allclose(y, _reference_mha(x[..., :dim], p, heads, dim), rtol=1e-4, atol=1e-5)
