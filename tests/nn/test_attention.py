"""SoftmaxAttention: full forward vs explicit reference; KV-cache decode."""
import functools

import jax
import jax.numpy as jnp
import pytest

from kernels import reference as kref
import numpy as np

from mtl.nn.attention import SoftmaxAttention, init_kv_cache, rope


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


def test_rope_matches_rotation_matrices_and_is_relative():
  x = np.asarray(jax.random.normal(jax.random.key(0), (5, 3, 6)), np.float64)  # [L, H, Dh]
  pos = np.array([0, 1, 4, 7, 100])
  got = np.asarray(rope(jnp.asarray(x, jnp.float32), jnp.asarray(pos)))
  want = np.zeros_like(x)
  for t, p in enumerate(pos):
    for i in range(3):  # pair (i, i + 3) rotated by p * 10000^(-2i/6)
      a = p * 10000.0 ** (-2 * i / 6)
      rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
      want[t, :, [i, i + 3]] = rot @ x[t, :, [i, i + 3]]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # q.k depends on the offset only: shifting both positions leaves it unchanged.
  q, k = jnp.asarray(x[0:1], jnp.float32), jnp.asarray(x[1:2], jnp.float32)
  dots = [jnp.sum(rope(q, jnp.array([s + 3])) * rope(k, jnp.array([s]))) for s in (0, 5, 50)]
  np.testing.assert_allclose(dots, [dots[0]] * 3, rtol=1e-4)


def test_rope_attention_matches_reference_on_rotated_qk():
  m = SoftmaxAttention(num_heads=2, head_dim=4, causal=True, rope=True)
  x = jax.random.normal(jax.random.key(0), (2, 7, 8))
  params = m.init(jax.random.key(1), x)
  p = params["params"]
  qkv = jnp.einsum("bld,dthe->tblhe", x, p["qkv"]["kernel"]) + p["qkv"]["bias"][:, None, None]
  pos = jnp.arange(7)[None].repeat(2, 0)
  q, k = (jnp.swapaxes(rope(a, pos), 1, 2) for a in (qkv[0], qkv[1]))
  o = kref.softmax_attention(q, k, jnp.swapaxes(qkv[2], 1, 2), causal=True)
  want = jnp.einsum("bhle,hed->bld", o, p["out"]["kernel"]) + p["out"]["bias"]
  assert _rel(m.apply(params, x), want) < 1e-5
  assert _rel(SoftmaxAttention(2, 4, causal=True).apply(params, x), want) > 1e-2  # positions really matter


@pytest.mark.parametrize("impl,use_rope", [("jnp", False), ("pallas", False), ("jnp", True), ("pallas", True)])
def test_prefill_then_decode_matches_full(impl, use_rope):
  m = SoftmaxAttention(num_heads=2, head_dim=4, causal=True, decode_impl=impl, rope=use_rope)
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
