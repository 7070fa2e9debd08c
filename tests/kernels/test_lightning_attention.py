"""Pallas lightning attention (interpret mode) vs the plain-jnp references."""
import jax
import jax.numpy as jnp
import pytest

from kernels import reference as ref
from kernels.lightning_attention import lightning_attention


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _inputs(length, b=1, h=2, dk=16, dv=8):
  ks = jax.random.split(jax.random.key(length), 3)
  return (jax.random.normal(ks[0], (b, h, length, dk)),
          jax.random.normal(ks[1], (b, h, length, dk)),
          jax.random.normal(ks[2], (b, h, length, dv)),
          ref.decay_slopes(h, base=4.0))


@pytest.mark.parametrize("causal,length,bwd", [
    (True, 40, "split"), (False, 40, "split"), (True, 32, "fused")])  # 40: not a multiple of the block (16)
def test_forward_and_grads_match_reference(causal, length, bwd):
  q, k, v, s = _inputs(length)
  out = lightning_attention(q, k, v, s, causal=causal, block_size=16,
                            interpret=True)
  want = ref.linear_attention_quadratic(q, k, v, s, causal=causal)
  assert out.shape == want.shape
  assert _rel(out, want) < 1e-4

  def loss(fn):
    return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))

  got = jax.grad(loss(lambda q, k, v: lightning_attention(
      q, k, v, s, causal=causal, block_size=16, interpret=True, bwd=bwd)),
                 argnums=(0, 1, 2))(q, k, v)
  exp = jax.grad(loss(lambda q, k, v: ref.linear_attention_quadratic(
      q, k, v, s, causal=causal)), argnums=(0, 1, 2))(q, k, v)
  for g, e in zip(got, exp):
    assert _rel(g, e) < 1e-4


def test_block_v_split_and_zero_decay():
  q, k, v, _ = _inputs(24, dv=16)
  s = jnp.zeros(2)  # no decay: plain causal linear attention
  out = lightning_attention(q, k, v, s, block_size=8, block_v=8,
                            interpret=True)
  assert _rel(out, ref.linear_attention_quadratic(q, k, v, s)) < 1e-4


def test_bad_inputs_raise():
  q, k, v, s = _inputs(16)
  with pytest.raises(ValueError, match="slopes"):
    lightning_attention(q, k, v, s[:1], interpret=True)
  with pytest.raises(ValueError, match="block_size"):
    lightning_attention(q, k, v, s, block_size=-1, interpret=True)
  with pytest.raises(ValueError, match="bwd"):
    lightning_attention(q, k, v, s, bwd="triton", interpret=True)
