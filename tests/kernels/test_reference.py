"""References agree with each other (chunked vs quadratic vs recurrent)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import reference as ref


def _qkv(b=2, h=3, length=37, dk=8, dv=6, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(ks[0], (b, h, length, dk))
  k = jax.random.normal(ks[1], (b, h, length, dk))
  v = jax.random.normal(ks[2], (b, h, length, dv))
  return q, k, v


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_decay_slopes():
  s = ref.decay_slopes(8)
  np.testing.assert_allclose(s, 2.0 ** (-np.arange(1, 9)), rtol=1e-6)
  with pytest.raises(ValueError, match="num_heads"):
    ref.decay_slopes(0)


def test_quadratic_matches_explicit_loop():
  q, k, v = _qkv(b=1, h=2, length=5, dk=3, dv=2)
  s = jnp.array([0.3, 0.0])
  got = ref.linear_attention_quadratic(q, k, v, s, causal=True)
  qn, kn, vn, sn = map(np.asarray, (q, k, v, s))
  want = np.zeros_like(np.asarray(got))
  for h in range(2):
    for t in range(5):
      for u in range(t + 1):
        want[0, h, t] += np.exp(-sn[h] * (t - u)) * (qn[0, h, t] @ kn[0, h, u]) * vn[0, h, u]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,block", [(37, 8), (5, 16)])
def test_chunked_causal_matches_quadratic(length, block):
  q, k, v = _qkv(length=length)
  s = ref.decay_slopes(3)
  want = ref.linear_attention_quadratic(q, k, v, s, causal=True)
  got = ref.lightning_attention_chunked(q, k, v, s, causal=True, block_size=block)
  assert _rel(got, want) < 1e-5


@pytest.mark.parametrize("causal,length,block", [(True, 37, 8), (False, 29, 8), (True, 5, 16), (True, 64, 4)])
def test_two_pass_matches_quadratic(causal, length, block):
  q, k, v = _qkv(length=length)
  s = jnp.array([0.0, 0.3, 30.0])  # no decay, moderate, only the diagonal survives
  want = ref.linear_attention_quadratic(q, k, v, s, causal=causal)
  got = ref.lightning_attention_two_pass(q, k, v, s, causal=causal, block_size=block)
  for h in range(3):
    assert _rel(got[:, h], want[:, h]) < 1e-5
  g = jax.grad(lambda q: jnp.sum(jnp.sin(ref.lightning_attention_two_pass(q, k, v, s, causal, block))))(q)
  g2 = jax.grad(lambda q: jnp.sum(jnp.sin(ref.linear_attention_quadratic(q, k, v, s, causal))))(q)
  assert _rel(g, g2) < 1e-4


def test_chunked_noncausal_matches_quadratic():
  q, k, v = _qkv(length=29)
  s = ref.decay_slopes(3, base=4.0)
  want = ref.linear_attention_quadratic(q, k, v, s, causal=False)
  got = ref.lightning_attention_chunked(q, k, v, s, causal=False, block_size=8)
  assert _rel(got, want) < 1e-5


def test_recurrent_and_cumsum_match_quadratic():
  q, k, v = _qkv(length=9)
  s = ref.decay_slopes(3)
  want = ref.linear_attention_quadratic(q, k, v, s)
  o, state = ref.linear_attention_recurrent(q, k, v, s)
  assert _rel(o, want) < 1e-5
  assert _rel(ref.linear_attention_cumsum(q, k, v, s), want) < 1e-5
  # Final state = sum_s lambda^(L-1-s) k_s^T v_s.
  lam = np.exp(-np.asarray(s))[None, :, None]
  w = lam ** (8 - np.arange(9))[None, None, :]
  want_state = np.einsum("bhl,bhld,bhle->bhde", np.broadcast_to(w, q.shape[:3]), k, v)
  np.testing.assert_allclose(state, want_state, rtol=1e-4, atol=1e-4)


def test_decode_steps_match_full():
  q, k, v = _qkv(length=7)
  s = ref.decay_slopes(3)
  full = ref.linear_attention_quadratic(q, k, v, s)
  state = jnp.zeros((2, 3, 8, 6))
  for t in range(7):
    o, state = ref.linear_decode_step(q[:, :, t], k[:, :, t], v[:, :, t], state, s)
    assert _rel(o, full[:, :, t]) < 1e-5
  sm = ref.softmax_attention(q, k, q, causal=True)
  lengths = jnp.array([7, 4])
  o = ref.softmax_decode_step(q[:, :, 6], k, q, lengths)
  assert _rel(o[0], sm[0, :, 6]) < 1e-5
  o1 = ref.softmax_decode_step(q[:, :, 3], k, q, lengths)
  assert _rel(o1[1], sm[1, :, 3]) < 1e-5


def test_bad_shapes_raise():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="slopes"):
    ref.lightning_attention_chunked(q, k, v, jnp.ones(2))
  with pytest.raises(ValueError, match=r"\[B, H, L, D\]"):
    ref.softmax_attention(q[0], k[0], v[0])
  with pytest.raises(ValueError, match="block_size"):
    ref.lightning_attention_chunked(q, k, v, jnp.ones(3), block_size=0)
