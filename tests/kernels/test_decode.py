"""Pallas decode kernels (interpret mode) vs the plain-jnp references."""
import jax
import jax.numpy as jnp
import pytest

from kernels import reference as ref
from kernels.linear_decode import linear_decode
from kernels.softmax_decode import softmax_decode


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _normal(i, shape):
  return jax.random.normal(jax.random.key(i), shape)


def test_linear_decode_matches_reference_over_steps():
  b, h, dk, dv = 2, 3, 16, 8
  s = ref.decay_slopes(h)
  state = jnp.zeros((b, h, dk, dv))
  q, k, v = _normal(0, (b, h, 5, dk)), _normal(1, (b, h, 5, dk)), _normal(2, (b, h, 5, dv))
  full = ref.linear_attention_quadratic(q, k, v, s)
  step = jax.jit(lambda *a: linear_decode(*a, interpret=True))
  for t in range(5):
    o, state = step(q[:, :, t], k[:, :, t], v[:, :, t], state, s)
    assert _rel(o, full[:, :, t]) < 1e-4
  _, want_state = ref.linear_attention_recurrent(q, k, v, s)
  assert _rel(state, want_state) < 1e-4


def test_linear_decode_bad_state_raises():
  q = jnp.zeros((1, 2, 4))
  with pytest.raises(ValueError, match="state"):
    linear_decode(q, q, q, jnp.zeros((1, 2, 4, 5)), jnp.ones(2), interpret=True)


@pytest.mark.parametrize("k_splits", [1, 2])
def test_softmax_decode_matches_reference(k_splits):
  b, h, lmax, dk, dv = 2, 3, 64, 16, 8
  q = _normal(3, (b, h, dk))
  kc, vc = _normal(4, (b, h, lmax, dk)), _normal(5, (b, h, lmax, dv))
  lengths = jnp.array([21, 64])  # 21: second split of seq 0 is empty
  got = softmax_decode(q, kc, vc, lengths, block_k=16, k_splits=k_splits,
                       interpret=True)
  assert _rel(got, ref.softmax_decode_step(q, kc, vc, lengths)) < 1e-4
  # Entries past the length must not matter.
  kc2 = kc.at[0, :, 21:].set(1e3)
  got2 = softmax_decode(q, kc2, vc, lengths, block_k=16, k_splits=k_splits,
                        interpret=True)
  assert _rel(got2, got) < 1e-6


def test_softmax_decode_bad_block_raises():
  q = jnp.zeros((1, 2, 4))
  kc = jnp.zeros((1, 2, 40, 4))
  with pytest.raises(ValueError, match="multiple of block_k"):
    softmax_decode(q, kc, kc, jnp.array([3]), block_k=16, interpret=True)
  with pytest.raises(ValueError, match="lengths"):
    softmax_decode(q, kc, kc, jnp.array([3, 4]), block_k=8, interpret=True)
