"""DecoderLM with the added mixers (linear attention, gated short conv, Hybrid conv + attention, learned
positions, per-head lightning slopes): causal, decoding == full forward, nested slicing."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.models.lm import DecoderLM, slice_params

V, B, L = 48, 2, 12
CONFIGS = {
    "linear": dict(mixer="linear", feature_dim=4),
    "conv": dict(mixer="conv", short_conv=3),
    "softmax_conv": dict(mixer="softmax", short_conv=3),
    "lightning_conv_slopes": dict(mixer="lightning", short_conv=4, decay_slopes=(0.0, 0.05, 0.5, 3.0)),
    "lightning_slopes": dict(mixer="lightning", decay_slopes=(0.0, 0.05, 0.5, 3.0)),
    "softmax_learned_positions": dict(mixer="softmax", rope=False, learned_positions=16),
}


def _jit(m, params, f):
  return jax.jit(lambda *a: m.apply({"params": params}, *a, method=f))


@functools.lru_cache(maxsize=None)
def _setup(name):
  m = DecoderLM(V, 32, 1, 4, block_size=4, **CONFIGS[name])
  toks = jax.random.randint(jax.random.PRNGKey(0), (B, L), 0, V)
  params = m.init(jax.random.PRNGKey(1), toks)["params"]
  # Non-zero biases so that every parameter matters in the checks.
  params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  return m, params, toks, _jit(m, params, DecoderLM.logits)(toks)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_causal(name):
  m, params, toks, full = _setup(name)
  toks2 = toks.at[:, 7].set((toks[:, 7] + 1) % V)
  full2 = m.apply({"params": params}, toks2, method=m.logits)
  np.testing.assert_allclose(full2[:, :7], full[:, :7], atol=1e-5)
  assert np.abs(full2[:, 7:] - full[:, 7:]).max() > 1e-4
  idx = jnp.array([[0, 5, 11], [3, 3, 7]])
  np.testing.assert_allclose(m.apply({"params": params}, toks, idx, method=m.logits),
                             np.take_along_axis(np.asarray(full), np.asarray(idx)[..., None], 1), atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - {"lightning_slopes"}))
def test_prefill_step_extend_commit_match_full_forward(name):
  m, params, toks, full = _setup(name)
  cache = m.apply({"params": params}, B, 16, method=m.init_cache)
  lg, cache = _jit(m, params, DecoderLM.prefill)(toks[:, :5], cache)
  np.testing.assert_allclose(lg, full[:, :5], atol=5e-5)
  c, outs = cache, []
  step = _jit(m, params, DecoderLM.step)
  for t in range(5, L):
    lt, c = step(toks[:, t], c)
    outs.append(lt)
  np.testing.assert_allclose(jnp.stack(outs, 1), full[:, 5:], atol=5e-5)
  lg, pending = _jit(m, params, DecoderLM.extend)(toks[:, 5:9], cache)
  np.testing.assert_allclose(lg, full[:, 5:9], atol=5e-5)
  c2 = _jit(m, params, DecoderLM.commit)(cache, pending, jnp.array([2, 4]))
  lt, _ = step(jnp.array([toks[0, 7], toks[1, 9]]), c2)
  np.testing.assert_allclose(lt[0], full[0, 7], atol=5e-5)
  np.testing.assert_allclose(lt[1], full[1, 9], atol=5e-5)
  c0 = _jit(m, params, DecoderLM.commit)(cache, pending, jnp.array([0, 1]))
  lt, _ = step(jnp.array([toks[0, 5], toks[1, 6]]), c0)
  np.testing.assert_allclose(lt, jnp.stack([full[0, 5], full[1, 6]]), atol=5e-5)


@pytest.mark.parametrize("name", ["linear", "softmax_conv", "lightning_conv_slopes"])
def test_slim_submodel_reads_leading_weights(name):
  m, params, toks, full = _setup(name)
  sub = m.slim(0.5)
  assert (sub.dim, sub.num_heads) == (16, 2)
  if m.decay_slopes is not None:
    assert sub.decay_slopes == m.decay_slopes[:2]          # the draft's heads keep their decays
  ps = slice_params(params, m, 0.5)
  a = _jit(sub, ps, DecoderLM.logits)(toks)
  loss = lambda p: m.apply({"params": p}, toks, width=0.5)["lm"].sum()
  b, g = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(a.sum(), b, rtol=1e-5)
  assert np.abs(a - full).max() > 1e-3
  gk = g["embed"]["embedding"]
  assert np.abs(gk[:, :16]).max() > 0 and np.abs(gk[:, 16:]).max() == 0


def test_lightning_slopes_are_the_heads_decays():
  # Head h of a lightning mixer with slope s weights the token t - d by exp(-s d) (relative to lag 0): with a
  # huge slope a head only sees the current token, so changing any earlier token leaves it unchanged.
  m = DecoderLM(V, 16, 1, 2, mixer="lightning", decay_slopes=(50.0, 50.0), block_size=4)
  toks = jax.random.randint(jax.random.PRNGKey(0), (1, 8), 0, V)
  p = m.init(jax.random.PRNGKey(1), toks)["params"]
  a = m.apply({"params": p}, toks, method=m.logits)
  b = m.apply({"params": p}, toks.at[:, 3].set((toks[:, 3] + 1) % V), method=m.logits)
  np.testing.assert_allclose(a[:, 4:], b[:, 4:], atol=1e-5)
  m2 = m.clone(decay_slopes=(0.0, 0.0))
  a = m2.apply({"params": p}, toks, method=m2.logits)
  b = m2.apply({"params": p}, toks.at[:, 3].set((toks[:, 3] + 1) % V), method=m2.logits)
  assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-4


def test_bad_mixer_configs():
  toks = jnp.zeros((1, 4), jnp.int32)
  init = lambda **kw: DecoderLM(V, 32, 1, 4, **kw).init(jax.random.PRNGKey(0), toks)
  with pytest.raises(ValueError, match="short_conv"):
    init(mixer="conv")
  with pytest.raises(ValueError, match="one slope per head"):
    init(mixer="lightning", decay_slopes=(0.1, 0.2))
  with pytest.raises(ValueError, match=">= 0"):
    init(mixer="lightning", decay_slopes=(0.1, -0.2, 0.1, 0.1))
  with pytest.raises(ValueError, match="decay_slopes"):
    init(mixer="softmax", decay_slopes=(0.1,) * 4)
  with pytest.raises(ValueError, match="decay_slopes"):
    init(mixer="linear", decay_slopes=(0.1,) * 4)
  with pytest.raises(ValueError, match="feature map"):
    init(mixer="linear", feature_map="relu")
  with pytest.raises(ValueError, match="learned_positions"):
    DecoderLM(V, 32, 1, 4, learned_positions=2).init(jax.random.PRNGKey(0), toks)
