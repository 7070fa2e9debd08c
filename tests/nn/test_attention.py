"""SoftmaxAttention: full forward vs explicit reference; KV-cache decode."""
import functools

import jax
import jax.numpy as jnp
import pytest

from kernels import reference as kref
from mtl.nn.attention import SoftmaxAttention, init_kv_cache


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_forward_matches_reference_attention():
  m = SoftmaxAttention(num_heads=2, head_dim=4, causal=True)
  x = jax.random.normal(jax.random.key(0), (2, 7, 8))
  params = m.init(jax.random.key(1), x)
  y = m.apply(params, x)
  assert y.shape == (2, 7, 8)
  p = params["params"]
  qkv = jnp.einsum("bld,dthe->tbhle", x, p["qkv"]["kernel"]) + jnp.moveaxis(
      p["qkv"]["bias"], 0, 0)[:, None, :, None, :]
  o = kref.softmax_attention(qkv[0], qkv[1], qkv[2], causal=True)
  want = jnp.einsum("bhle,hed->bld", o, p["out"]["kernel"]) + p["out"]["bias"]
  assert _rel(y, want) < 1e-5


@pytest.mark.parametrize("impl", ["jnp", "pallas"])
def test_prefill_then_decode_matches_full(impl):
  m = SoftmaxAttention(num_heads=2, head_dim=4, causal=True, decode_impl=impl)
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  params = m.init(jax.random.key(1), x)
  full = m.apply(params, x)
  cache = init_kv_cache(2, 16, 2, 4)
  y, cache = m.apply(params, x[:, :3], cache, method=SoftmaxAttention.prefill)
  assert _rel(y, full[:, :3]) < 1e-5
  step = jax.jit(functools.partial(m.apply, method=SoftmaxAttention.decode_step))
  for t in range(3, 6):
    y, cache = step(params, x[:, t], cache)
    assert _rel(y, full[:, t]) < 1e-4
  assert cache["length"].tolist() == [6, 6]


def test_bad_config_raises():
  x = jnp.zeros((1, 4, 8))
  with pytest.raises(ValueError, match="decode_impl"):
    SoftmaxAttention(2, 4, decode_impl="cuda").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="max_len"):
    init_kv_cache(1, 0, 2, 4)
