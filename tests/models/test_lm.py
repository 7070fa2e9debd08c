import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.models.lm import DecoderLM, slice_params

V, B, L = 48, 2, 12


def _jit(m, params, f):
  """Jitted m.apply(params, *args, method=f) (args static where they are Python ints)."""
  return jax.jit(lambda *a: m.apply({"params": params}, *a, method=f))


@functools.lru_cache(maxsize=None)
def _setup(mixer, impl="jnp"):
  m = DecoderLM(V, 32, 2, 4, mixer=mixer, impl=impl, block_size=4, tasks=("a", "b"))
  toks = jax.random.randint(jax.random.PRNGKey(0), (B, L), 0, V)
  params = m.init(jax.random.PRNGKey(1), toks)["params"]
  full = _jit(m, params, DecoderLM.logits)(toks)
  return m, params, toks, full


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_outputs_per_task_and_causal(mixer):
  m, params, toks, full = _setup(mixer)
  out = m.apply({"params": params}, toks.astype(jnp.float32), train=True)
  assert set(out) == {"a", "b"} and out["a"].shape == (B, L, V)
  np.testing.assert_allclose(out["b"], full, atol=2e-5)
  # Changing a later token does not change earlier logits.
  toks2 = toks.at[:, 7].set((toks[:, 7] + 1) % V)
  full2 = m.apply({"params": params}, toks2, method=m.logits)
  np.testing.assert_allclose(full2[:, :7], full[:, :7], atol=1e-5)
  assert np.abs(full2[:, 7:] - full[:, 7:]).max() > 1e-4


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_prefill_step_extend_commit_match_full_forward(mixer):
  m, params, toks, full = _setup(mixer)
  ap = lambda f, *a: _jit(m, params, f)(*a)
  cache = m.apply({"params": params}, B, 16, method=m.init_cache)
  lg, cache = ap(DecoderLM.prefill, toks[:, :5], cache)
  np.testing.assert_allclose(lg, full[:, :5], atol=2e-5)
  c, outs = cache, []
  step = _jit(m, params, DecoderLM.step)
  for t in range(5, L):
    lt, c = step(toks[:, t], c)
    outs.append(lt)
  np.testing.assert_allclose(jnp.stack(outs, 1), full[:, 5:], atol=2e-5)
  lg, pending = ap(DecoderLM.extend, toks[:, 5:9], cache)
  np.testing.assert_allclose(lg, full[:, 5:9], atol=2e-5)
  # Rows keep different prefixes: row 0 takes 2 tokens, row 1 all 4.
  c2 = ap(DecoderLM.commit, cache, pending, jnp.array([2, 4]))
  lt, _ = step(jnp.array([toks[0, 7], toks[1, 9]]), c2)
  np.testing.assert_allclose(lt[0], full[0, 7], atol=2e-5)
  np.testing.assert_allclose(lt[1], full[1, 9], atol=2e-5)


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_pallas_decode_kernels_match(mixer):
  ms = DecoderLM(V, 16, 1, 2, mixer=mixer, impl="jnp", block_size=4)
  mp = ms.clone(impl="pallas")
  toks = jax.random.randint(jax.random.PRNGKey(0), (B, 8), 0, V)
  p = ms.init(jax.random.PRNGKey(1), toks)["params"]
  ref = _jit(ms, p, DecoderLM.logits)(toks)
  cache = mp.apply({"params": p}, B, 16, method=mp.init_cache)
  _, cache = _jit(mp, p, DecoderLM.prefill)(toks[:, :7], cache)
  lt, _ = _jit(mp, p, DecoderLM.step)(toks[:, 7], cache)
  np.testing.assert_allclose(lt, ref[:, 7], atol=2e-5)


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_slim_submodel_uses_leading_weights(mixer):
  m, params, toks, full = _setup(mixer)
  sub = m.slim(0.5)
  assert (sub.dim, sub.num_heads, sub.glu_hidden) == (16, 2, 32)
  ps = slice_params(params, m, 0.5)
  k = ps["block0"]["glu"]["w1"]["kernel"]
  np.testing.assert_array_equal(k, params["block0"]["glu"]["w1"]["kernel"][:16, :32])
  a = _jit(sub, ps, DecoderLM.logits)(toks)
  loss = lambda p: m.apply({"params": p}, toks, width=0.5)["a"].sum()
  b, g = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(a.sum(), b, rtol=1e-5)
  assert np.abs(a - full).max() > 1e-3
  # Gradients of the slim call reach only the leading block of the shared weights.
  gk = g["block0"]["glu"]["w1"]["kernel"]
  assert np.abs(gk[:16, :32]).max() > 0 and np.abs(gk[16:]).max() == 0


def test_bad_config():
  toks = jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="mixer"):
    DecoderLM(V, 32, 1, 4, mixer="mamba").init(jax.random.PRNGKey(0), toks)
  with pytest.raises(ValueError, match="multiple"):
    DecoderLM(V, 30, 1, 4).init(jax.random.PRNGKey(0), toks)
  with pytest.raises(ValueError, match="width"):
    DecoderLM(V, 32, 1, 4).slim(1.5)
