"""Grouped-query / multi-query / cross-layer SoftmaxAttention: float64 reference, KV-head pooling, decoding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.nn.attention import SoftmaxAttention, init_kv_cache, kv_cache_bytes, pool_kv_heads, rope


def np_gqa(x, p, heads, kv_heads, causal=True):
  """float64 GQA forward from the q / kv parameters: x [B, L, D] -> [B, L, D_out]."""
  x = np.asarray(x, np.float64)
  f = lambda a: np.asarray(a, np.float64)
  q = np.einsum("bld,dhe->blhe", x, f(p["q"]["kernel"])) + f(p["q"]["bias"])
  kv = np.einsum("bld,dthe->tblhe", x, f(p["kv"]["kernel"])) + f(p["kv"]["bias"])[:, None, None]
  g = heads // kv_heads
  b, length, _, dh = q.shape
  o = np.zeros_like(q)
  for h in range(heads):
    s = np.einsum("bte,bse->bts", q[:, :, h], kv[0][:, :, h // g]) / np.sqrt(dh)
    if causal:
      s = np.where(np.tril(np.ones((length, length), bool)), s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    o[:, :, h] = np.einsum("bts,bse->bte", w / w.sum(-1, keepdims=True), kv[1][:, :, h // g])
  return np.einsum("blhe,hed->bld", o, f(p["out"]["kernel"])) + f(p["out"]["bias"])


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_gqa_forward_matches_float64_reference(kv_heads):
  m = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, num_kv_heads=kv_heads)
  x = 3.0 * jax.random.normal(jax.random.key(0), (2, 7, 8))
  params = m.init(jax.random.key(1), x)
  p = params["params"]
  assert p["q"]["kernel"].shape == (8, 4, 4) and p["kv"]["kernel"].shape == (8, 2, kv_heads, 4)
  np.testing.assert_allclose(m.apply(params, x), np_gqa(x, p, 4, kv_heads), rtol=1e-4, atol=1e-5)


def test_pool_kv_heads_is_the_group_mean_and_exact_for_equal_heads():
  mha = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, rope=True)
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  p = mha.init(jax.random.key(1), x)["params"]
  pooled = pool_kv_heads({"mixer": p}, 2)["mixer"]
  kern = np.asarray(p["qkv"]["kernel"])
  np.testing.assert_allclose(pooled["kv"]["kernel"][:, 0, 1], (kern[:, 1, 2] + kern[:, 1, 3]) / 2, rtol=1e-6)
  np.testing.assert_array_equal(pooled["q"]["kernel"], kern[:, 0])
  # Make the K/V heads of each group equal: pooling changes nothing, the GQA model is the MHA model.
  same = kern.copy()
  same[:, 1:, 1], same[:, 1:, 3] = same[:, 1:, 0], same[:, 1:, 2]
  bias = np.asarray(p["qkv"]["bias"]).copy()
  bias[1:, 1], bias[1:, 3] = bias[1:, 0], bias[1:, 2]
  p_same = {**p, "qkv": {"kernel": jnp.asarray(same), "bias": jnp.asarray(bias)}}
  gqa = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, rope=True, num_kv_heads=2)
  np.testing.assert_allclose(gqa.apply({"params": pool_kv_heads(p_same, 2)}, x),
                             mha.apply({"params": p_same}, x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="not a multiple"):
    pool_kv_heads(p, 3)
  with pytest.raises(ValueError, match="no multi-head"):
    pool_kv_heads({"dense": {"kernel": jnp.zeros((2, 2))}}, 1)


@pytest.mark.parametrize("impl", ["jnp", "pallas", "lean"])
def test_gqa_prefill_then_decode_matches_full(impl):
  m = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, decode_impl=impl, rope=True, num_kv_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  params = m.init(jax.random.key(1), x)
  full = m.apply(params, x)
  cache = init_kv_cache(2, 16, 2, 4)
  y, cache = m.apply(params, x[:, :3], cache, method=SoftmaxAttention.prefill)
  np.testing.assert_allclose(y, full[:, :3], rtol=1e-4, atol=1e-5)
  step = jax.jit(functools.partial(m.apply, method=SoftmaxAttention.decode_step))
  for t in range(3, 6):
    y, cache = step(params, x[:, t], cache)
    np.testing.assert_allclose(y, full[:, t], rtol=1e-4, atol=1e-5)
  assert cache["k"].shape == (2, 2, 16, 4) and cache["length"].tolist() == [6, 6]


def test_cross_layer_consumer_reads_the_producers_kv():
  prod = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, rope=True, num_kv_heads=2)
  cons = SoftmaxAttention(num_heads=4, head_dim=4, causal=True, rope=True, num_kv_heads=2, project_kv=False)
  x, x2 = (jax.random.normal(jax.random.key(i), (1, 5, 8)) for i in (0, 1))
  pp = prod.init(jax.random.key(2), x)
  _, kv = prod.apply(pp, x, return_kv=True)
  pc = cons.init(jax.random.key(3), x2, kv=kv)
  assert set(pc["params"]) == {"q", "out"}            # no K/V projection of its own
  y = cons.apply(pc, x2, kv=kv)
  # Defining property: the consumer's output is attention of its own queries over the producer's K/V, i.e. a
  # GQA layer with the consumer's q / out and the producer's kv projection, evaluated on the producer's input.
  # (Without RoPE positions the keys of x come from the producer projection of x, queries from x2.)
  q = np.einsum("bld,dhe->blhe", x2, pc["params"]["q"]["kernel"]) + pc["params"]["q"]["bias"]
  q = rope(jnp.asarray(q), jnp.arange(5)[None])
  want = jax.nn.dot_product_attention(q, *kv, is_causal=True)
  want = jnp.einsum("blhe,hed->bld", want, pc["params"]["out"]["kernel"]) + pc["params"]["out"]["bias"]
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  cache = init_kv_cache(1, 8, 2, 4)
  _, cache = prod.apply(pp, x, cache, method=SoftmaxAttention.prefill)
  y_pre, same = cons.apply(pc, x2, cache, method=SoftmaxAttention.prefill)
  np.testing.assert_allclose(y_pre, y, rtol=1e-5, atol=1e-6)
  assert same is cache
  with pytest.raises(ValueError, match="needs the K/V"):
    cons.apply(pc, x2)


def test_kv_cache_bytes_scale_with_kv_heads():
  mha = init_kv_cache(2, 64, 16, 8)
  assert kv_cache_bytes(mha) == 2 * 2 * 16 * 64 * 8 * 4
  assert kv_cache_bytes(init_kv_cache(2, 64, 4, 8)) * 4 == kv_cache_bytes(mha)
  assert kv_cache_bytes(init_kv_cache(2, 64, 1, 8)) * 16 == kv_cache_bytes(mha)


def test_bad_config_raises():
  x = jnp.zeros((1, 4, 8))
  with pytest.raises(ValueError, match="divide num_heads"):
    SoftmaxAttention(4, 2, num_kv_heads=3).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="decode_programs"):
    SoftmaxAttention(4, 2, decode_impl="pallas", decode_programs=4).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="max_len"):
    init_kv_cache(1, 0, 2, 4)
