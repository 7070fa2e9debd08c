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
    # identity q/k features, no LRPE: plain decayed linear attention, with (HybridBlock) and without a conv
    "lightning_id_conv": dict(mixer="lightning", short_conv=3, lightning_lrpe=False, lightning_qk_activation="none"),
    "lightning_id": dict(mixer="lightning", lightning_lrpe=False, lightning_qk_activation="none"),
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


@pytest.mark.parametrize("name", ["linear", "softmax_conv", "lightning_conv_slopes", "lightning_id_conv"])
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
  with pytest.raises(ValueError, match="qk_activation 'relu6'"):
    init(mixer="lightning", lightning_qk_activation="relu6")
  with pytest.raises(ValueError, match="qk_activation 'relu6'"):
    init(mixer="lightning", short_conv=3, lightning_qk_activation="relu6")
  for kw in (dict(lightning_lrpe=False), dict(lightning_qk_activation="none")):   # options without effect
    for mixer in ("softmax", "linear"):
      with pytest.raises(ValueError, match="lightning mixer only"):
        init(mixer=mixer, **kw)


def test_lightning_identity_features_no_lrpe_is_decayed_linear_attention():
  # lightning_lrpe=False + identity q/k: mixer output (before SRMSNorm, gate and projection) is
  # sum_{s<=t} exp(-slope_h (t - s)) (q_t . k_s) v_s, checked in float64 on badly scaled inputs.
  from mtl.nn.lightning import LightningAttention  # pylint: disable=import-outside-toplevel
  slopes = (0.0, 0.7)
  m = LightningAttention(2, 4, causal=True, use_lrpe=False, qk_activation="none", decay_slopes=slopes, block_size=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 8)) * jnp.array([1e-3, 1.0, 30.0, 1.0] * 2)
  p = m.init(jax.random.PRNGKey(1), x)
  w = {k: np.asarray(v, np.float64) for k, v in p["params"]["qkvu"].items()}
  proj = np.einsum("bld,dfhe->blfhe", np.asarray(x, np.float64), w["kernel"]) + w["bias"]
  q, k, v, u = (proj[:, :, i] for i in range(4))                                   # [B, L, H, Dh]
  lag = np.arange(7)[:, None] - np.arange(7)[None, :]
  decay = np.stack([np.where(lag >= 0, np.exp(-s * np.maximum(lag, 0)), 0.0) for s in slopes])   # [H, L, L]
  o = np.einsum("hts,bthd,bshd,bshe->bthe", decay, q, k, v)
  o = o.reshape(2, 7, 8)
  o = (o / np.sqrt(np.mean(o * o, -1, keepdims=True) + 1e-6)).reshape(2, 7, 2, 4) * u
  wo = {k2: np.asarray(v2, np.float64) for k2, v2 in p["params"]["out"].items()}
  want = np.einsum("blhe,hed->bld", o, wo["kernel"]) + wo["bias"]
  got = m.apply(p, x)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
  silu = LightningAttention(2, 4, causal=True, use_lrpe=False, decay_slopes=slopes, block_size=3)
  assert np.abs(np.asarray(silu.apply(p, x)) - want).max() > 1e-2 * np.abs(want).max()   # the default differs
