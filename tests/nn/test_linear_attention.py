"""Linear attention with Based's Taylor feature map and the gated short convolution against float64 references:
the feature map's kernel identity, causality, and recurrent decoding == the parallel forward."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.nn import feature_maps
from mtl.nn.linear_attention import LinearAttention
from mtl.nn.short_conv import GatedShortConv

B, L, D = 2, 9, 8


def test_taylor_feature_map_is_the_second_order_expansion_of_exp():
  rng = np.random.default_rng(0)
  for scale in (1e-3, 1.0, 30.0):                       # badly scaled inputs included
    q, k = rng.normal(size=(5, 4)) * scale, rng.normal(size=(7, 4)) * scale
    s = q @ k.T / 2.0                                    # q.k / sqrt(d), d = 4
    want = 1 + s + s * s / 2
    fq = np.asarray(feature_maps.feature_map("taylor_exp", jnp.asarray(q, jnp.float32)), np.float64)
    fk = np.asarray(feature_maps.feature_map("taylor_exp", jnp.asarray(k, jnp.float32)), np.float64)
    assert fq.shape == (5, feature_maps.feature_size("taylor_exp", 4)) == (5, 21)
    # The explicit features sum terms up to (|q||k|)^2 / 8 in float32: error relative to the largest term.
    np.testing.assert_allclose(fq @ fk.T, want, rtol=0, atol=1e-5 * (1 + np.abs(want).max()))
    got = feature_maps.kernel("taylor_exp", jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), "qd,kd->qk")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert np.all(want >= 0.5 - 1e-12)                  # 1 + s + s^2/2 >= 1/2: the normaliser never vanishes
  np.testing.assert_allclose(feature_maps.feature_map("elu1", jnp.array([-50.0, 0.0, 2.0])), [0.0, 1.0, 3.0],
                             atol=1e-6)
  with pytest.raises(ValueError, match="feature map"):
    feature_maps.feature_size("cos", 4)


@functools.lru_cache(maxsize=None)
def _linear(feature_map="taylor_exp"):
  m = LinearAttention(num_heads=2, feature_dim=3, head_dim=4, feature_map=feature_map)
  x = jax.random.normal(jax.random.PRNGKey(0), (B, L, D))
  x = x.at[:, 3].multiply(25.0)                         # one badly scaled token
  params = m.init(jax.random.PRNGKey(1), x)["params"]
  return m, params, x


def _linear_reference(params, x, fmap):
  """float64 numpy: o_t = sum_{s<=t} phi(q_t).phi(k_s) v_s / sum_{s<=t} phi(q_t).phi(k_s), then the output."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64)
  qk = np.einsum("bld,dnhf->blnhf", x, p["qk"]["kernel"]) + p["qk"]["bias"]
  q, k = qk[:, :, 0], qk[:, :, 1]                        # [B, L, H, F]
  v = np.einsum("bld,dhe->blhe", x, p["v"]["kernel"]) + p["v"]["bias"]
  d = q.shape[-1]
  if fmap == "taylor_exp":
    a = np.einsum("bqhf,bkhf->bhqk", q, k) / np.sqrt(d)
    a = 1 + a + a * a / 2
  else:
    phi = lambda z: np.where(z > 0, z + 1, np.exp(z))
    a = np.einsum("bqhf,bkhf->bhqk", phi(q), phi(k))
  a = a * np.tril(np.ones((x.shape[1],) * 2))
  o = np.einsum("bhqk,bkhe->bqhe", a, v) / (a.sum(-1).transpose(0, 2, 1)[..., None] + 1e-6)
  return np.einsum("blhe,hed->bld", o, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("fmap", ["taylor_exp", "elu1"])
def test_linear_attention_matches_float64_reference_and_is_causal(fmap):
  m, params, x = _linear(fmap)
  y = m.apply({"params": params}, x)
  np.testing.assert_allclose(y, _linear_reference(params, x, fmap), rtol=1e-4, atol=1e-4)
  y2 = m.apply({"params": params}, x.at[:, 6].set(-x[:, 6]))
  np.testing.assert_allclose(y2[:, :6], y[:, :6], atol=1e-6)
  assert np.abs(y2[:, 6:] - y[:, 6:]).max() > 1e-3


@pytest.mark.parametrize("fmap", ["taylor_exp"])
def test_linear_attention_recurrent_decode_equals_parallel_forward(fmap):
  m, params, x = _linear(fmap)
  y = m.apply({"params": params}, x)
  st = m.apply({"params": params}, B, method=m.init_state)
  assert st["s"].shape == (B, 2, 13 if fmap == "taylor_exp" else 3, 4)
  step = jax.jit(lambda xt, s: m.apply({"params": params}, xt, s, method=m.step))
  outs = []
  for t in range(L):
    yt, st = step(x[:, t], st)
    outs.append(yt)
  np.testing.assert_allclose(jnp.stack(outs, 1), y, rtol=1e-4, atol=1e-4)
  assert m.apply({"params": params}, method=lambda mod: mod.state_size()) == 2 * 13 * 5 or fmap != "taylor_exp"


def _conv_reference(params, x, k):
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64)
  conv = np.zeros_like(x) + p["bias"]
  for t in range(x.shape[1]):
    for j in range(k):
      if t - j >= 0:
        conv[:, t] += p["kernel"][j] * x[:, t - j]
  return conv * (x @ p["proj"]["kernel"] + p["proj"]["bias"])


@pytest.mark.parametrize("k", [3, 12])                # 12 > L: the window is longer than the sequence
def test_gated_short_conv_reference_causality_and_decode(k):
  m = GatedShortConv(D, k)
  x = jax.random.normal(jax.random.PRNGKey(0), (B, L, D)) * jnp.array([1e-3] * 4 + [1e2] * 4)
  params = m.init(jax.random.PRNGKey(1), x)["params"]
  params = jax.tree_util.tree_map(lambda a: a + 0.1, params)   # non-zero biases
  y = m.apply({"params": params}, x)
  np.testing.assert_allclose(y, _conv_reference(params, x, k), rtol=1e-4, atol=1e-3)
  y2 = m.apply({"params": params}, x.at[:, 5].add(1.0))
  np.testing.assert_allclose(y2[:, :5], y[:, :5], rtol=1e-6)
  changed = np.abs(np.asarray(y2 - y)).max(-1)[0] > 0
  np.testing.assert_array_equal(changed[5:], [t - 5 < k for t in range(5, L)])   # reaches exactly K tokens
  hist = m.apply({"params": params}, B, method=m.init_state)
  step = jax.jit(lambda xt, h: m.apply({"params": params}, xt, h, method=m.step))
  outs = []
  for t in range(L):
    yt, hist = step(x[:, t], hist)
    outs.append(yt)
  np.testing.assert_allclose(jnp.stack(outs, 1), y, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="kernel_size"):
    GatedShortConv(D, 0).init(jax.random.PRNGKey(0), x)
