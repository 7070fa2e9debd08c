"""DecoderLM with grouped-query attention and cross-layer KV sharing: decoding, cache bytes, slimming."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.models.lm import DecoderLM, slice_params
from mtl.nn.attention import kv_cache_bytes

V, B, L = 48, 2, 12


def _jit(m, params, f):
  return jax.jit(lambda *a: m.apply({"params": params}, *a, method=f))


@functools.lru_cache(maxsize=None)
def _setup(kv_heads, kv_share):
  m = DecoderLM(V, 32, 3, 4, mixer="softmax", num_kv_heads=kv_heads, kv_share=kv_share, tasks=("a",))
  toks = jax.random.randint(jax.random.PRNGKey(0), (B, L), 0, V)
  params = m.init(jax.random.PRNGKey(1), toks)["params"]
  return m, params, toks, _jit(m, params, DecoderLM.logits)(toks)


@pytest.mark.parametrize("kv_heads,kv_share", [(2, 1), (1, 2), (None, 2)])
def test_prefill_step_extend_commit_match_full_forward(kv_heads, kv_share):
  m, params, toks, full = _setup(kv_heads, kv_share)
  cache = m.apply({"params": params}, B, 16, method=m.init_cache)
  # Depth 3 with kv_share 2: layers 0 and 2 hold caches, layer 1 reads layer 0's.
  assert [bool(c) for c in cache] == [True, kv_share == 1, True]
  lg, cache = _jit(m, params, DecoderLM.prefill)(toks[:, :5], cache)
  np.testing.assert_allclose(lg, full[:, :5], atol=2e-5)
  step, c, outs = _jit(m, params, DecoderLM.step), cache, []
  for t in range(5, L):
    lt, c = step(toks[:, t], c)
    outs.append(lt)
  np.testing.assert_allclose(jnp.stack(outs, 1), full[:, 5:], atol=2e-5)
  lg, pending = _jit(m, params, DecoderLM.extend)(toks[:, 5:9], cache)
  np.testing.assert_allclose(lg, full[:, 5:9], atol=2e-5)
  c2 = _jit(m, params, DecoderLM.commit)(cache, pending, jnp.array([2, 4]))
  lt, _ = step(jnp.array([toks[0, 7], toks[1, 9]]), c2)
  np.testing.assert_allclose(lt[0], full[0, 7], atol=2e-5)
  np.testing.assert_allclose(lt[1], full[1, 9], atol=2e-5)


def test_pallas_decode_matches_with_groups_and_sharing():
  m, params, toks, full = _setup(2, 2)
  mp = m.clone(impl="pallas")
  cache = mp.apply({"params": params}, B, 16, method=mp.init_cache)
  _, cache = _jit(mp, params, DecoderLM.prefill)(toks[:, :7], cache)
  lt, _ = _jit(mp, params, DecoderLM.step)(toks[:, 7], cache)
  np.testing.assert_allclose(lt, full[:, 7], atol=2e-5)


def test_cache_bytes_gqa_quarter_cla_eighth():
  def nbytes(**kw):
    m = DecoderLM(V, 64, 4, 16, mixer="softmax", **kw)
    return kv_cache_bytes(m.apply({"params": {}}, 2, 64, method=m.init_cache))
  mha = nbytes()
  assert mha == 4 * 2 * 2 * 16 * 64 * 4 * 4        # layers * (k, v) * B * H * Lmax * Dh * fp32
  assert nbytes(num_kv_heads=4) * 4 == mha         # GQA 4 of 16 KV heads: 1/4
  assert nbytes(num_kv_heads=4, kv_share=2) * 8 == mha   # + CLA2: half again
  assert nbytes(num_kv_heads=1) * 16 == mha        # MQA


def test_cla_consumers_have_no_kv_projection():
  m, params, _, _ = _setup(None, 2)
  assert "qkv" in params["block0"]["mixer"] and "qkv" in params["block2"]["mixer"]
  assert set(params["block1"]["mixer"]) == {"q", "out"}


def test_slim_gqa_keeps_groups():
  m, params, toks, full = _setup(2, 1)
  sub = m.slim(0.5)
  assert (sub.num_heads, sub.num_kv_heads) == (2, 1)
  ps = slice_params(params, m, 0.5)
  a = _jit(sub, ps, DecoderLM.logits)(toks)
  b = m.apply({"params": params}, toks, width=0.5)["a"]
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert np.abs(a - full).max() > 1e-3


def test_bad_config():
  toks = jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="softmax mixer only"):
    DecoderLM(V, 32, 1, 4, mixer="lightning", num_kv_heads=2).init(jax.random.PRNGKey(0), toks)
  with pytest.raises(ValueError, match="kv_share"):
    DecoderLM(V, 32, 2, 4, mixer="softmax", kv_share=0).init(jax.random.PRNGKey(0), toks)
  with pytest.raises(ValueError, match="divide num_heads"):
    DecoderLM(V, 32, 1, 4, mixer="softmax", num_kv_heads=3).init(jax.random.PRNGKey(0), toks)
