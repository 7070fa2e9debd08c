"""Lightning attention layers: jnp vs pallas, decode vs full, block, norms."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.nn.lightning import (GLU, LightningAttention, SRMSNorm,
                              TransNormerBlock)


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_srmsnorm_and_glu():
  x = jax.random.normal(jax.random.key(0), (3, 8)) * 5.0
  y = SRMSNorm().apply({}, x)
  np.testing.assert_allclose(jnp.mean(y * y, -1), 1.0, rtol=1e-4)
  g = GLU(hidden_dim=6)
  p = g.init(jax.random.key(1), x)
  w = p["params"]
  want = ((x @ w["w1"]["kernel"] + w["w1"]["bias"]) *
          (x @ w["w2"]["kernel"] + w["w2"]["bias"])) @ w["w3"]["kernel"] + w["w3"]["bias"]
  assert _rel(g.apply(p, x), want) < 1e-5
  with pytest.raises(ValueError, match="activation"):
    GLU(4, activation="relu6").init(jax.random.key(0), x)


def test_pallas_matches_jnp():
  """Layer-level forward, causal and non-causal (kernel grads: tests/kernels)."""
  x = jax.random.normal(jax.random.key(0), (1, 21, 16))
  kw = dict(num_heads=2, head_dim=8, block_size=8)
  params = LightningAttention(**kw).init(jax.random.key(1), x)
  for causal in (False, True):
    m_j = LightningAttention(impl="jnp", causal=causal, **kw)
    m_p = LightningAttention(impl="pallas", causal=causal, **kw)
    assert _rel(m_p.apply(params, x), m_j.apply(params, x)) < 1e-4


def test_lrpe_is_relative_noncausal_has_future_dependence():
  m = LightningAttention(num_heads=2, head_dim=8, causal=False, block_size=4)
  x = jax.random.normal(jax.random.key(0), (1, 9, 16))
  p = m.init(jax.random.key(1), x)
  y = m.apply(p, x)
  y2 = m.apply(p, x.at[:, -1].add(1.0))
  assert float(jnp.abs(y2[:, 0] - y[:, 0]).max()) > 1e-6
  mc = LightningAttention(num_heads=2, head_dim=8, causal=True, block_size=4)
  yc, yc2 = mc.apply(p, x), mc.apply(p, x.at[:, -1].add(1.0))
  np.testing.assert_allclose(yc[:, :-1], yc2[:, :-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["jnp", "pallas"])
def test_step_matches_full_causal(impl):
  m = LightningAttention(num_heads=2, head_dim=8, causal=True, block_size=4,
                         impl=impl)
  x = jax.random.normal(jax.random.key(0), (2, 6, 16))
  p = m.init(jax.random.key(1), x)
  full = m.apply(p, x)
  state = m.init_state(2)
  step = jax.jit(functools.partial(m.apply, method=LightningAttention.step))
  for t in range(6):
    y, state = step(p, x[:, t], state)
    assert _rel(y, full[:, t]) < 1e-4


@pytest.mark.parametrize("mixer", ["lightning", "softmax"])
def test_block_forward_and_decode(mixer):
  blk = TransNormerBlock(dim=16, num_heads=2, mlp_ratio=2.0, causal=True,
                         mixer=mixer, block_size=4)
  x = jax.random.normal(jax.random.key(0), (2, 5, 16))
  p = blk.init(jax.random.key(1), x)
  full = blk.apply(p, x)
  assert full.shape == x.shape
  state = blk.init_state(2, 8)
  step = jax.jit(functools.partial(blk.apply, method=TransNormerBlock.step))
  for t in range(5):
    y, state = step(p, x[:, t], state)
    assert _rel(y, full[:, t]) < 1e-4


def test_block_bad_config_raises():
  x = jnp.zeros((1, 4, 16))
  with pytest.raises(ValueError, match="mixer"):
    TransNormerBlock(16, 2, mixer="mamba").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="multiple of num_heads"):
    TransNormerBlock(15, 2).init(jax.random.key(0), jnp.zeros((1, 4, 15)))
  with pytest.raises(ValueError, match="impl"):
    LightningAttention(2, 8, impl="cuda").init(jax.random.key(0), x)
