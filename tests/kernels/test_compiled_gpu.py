"""Compiled (interpret=False) Pallas kernels vs references; GPU only.

Skipped on CPU (CI). Run on a GPU machine with
`JAX_PLATFORMS=cuda pytest tests/kernels/test_compiled_gpu.py`.
"""
import jax
import jax.numpy as jnp
import pytest

from kernels import reference as ref
from kernels.lightning_attention import lightning_attention
from kernels.linear_decode import linear_decode
from kernels.softmax_decode import softmax_decode

pytestmark = pytest.mark.skipif(jax.default_backend() != "gpu",
                                reason="compiled Pallas kernels need a GPU")


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _n(i, shape):
  return jax.random.normal(jax.random.key(i), shape)


@pytest.mark.parametrize("causal,length,dk,block_v,bwd", [
    (True, 200, 64, None, "split"), (False, 200, 64, 32, "fused"),
    (True, 256, 128, 32, "fused"), (False, 256, 128, 32, "split")])
def test_lightning_compiled(causal, length, dk, block_v, bwd):
  b, h, dv = 2, 4, 64
  q, k, v = _n(0, (b, h, length, dk)), _n(1, (b, h, length, dk)), _n(2, (b, h, length, dv))
  s = ref.decay_slopes(h)
  fn = lambda q, k, v: lightning_attention(q, k, v, s, causal=causal, block_size=64,
                                           interpret=False, block_v=block_v, bwd=bwd)
  rf = lambda q, k, v: ref.linear_attention_quadratic(q, k, v, s, causal=causal)
  assert _rel(jax.jit(fn)(q, k, v), rf(q, k, v)) < 1e-4
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))
  g1 = jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2)))(q, k, v)
  g2 = jax.grad(loss(rf), argnums=(0, 1, 2))(q, k, v)
  for a, e in zip(g1, g2):
    assert _rel(a, e) < 1e-4


def test_linear_decode_compiled():
  b, h, dk, dv = 2, 4, 128, 64
  s = ref.decay_slopes(h)
  q, k, v, st = _n(0, (b, h, dk)), _n(1, (b, h, dk)), _n(2, (b, h, dv)), _n(3, (b, h, dk, dv))
  o, new = jax.jit(lambda *a: linear_decode(*a, interpret=False))(q, k, v, st, s)
  o2, new2 = ref.linear_decode_step(q, k, v, st, s)
  assert _rel(o, o2) < 1e-4 and _rel(new, new2) < 1e-4


@pytest.mark.parametrize("k_splits", [1, 4])
def test_softmax_decode_compiled(k_splits):
  b, h, lmax, d = 2, 4, 1024, 64
  q, kc, vc = _n(0, (b, h, d)), _n(1, (b, h, lmax, d)), _n(2, (b, h, lmax, d))
  lengths = jnp.array([300, 1024])
  got = jax.jit(lambda *a: softmax_decode(*a, block_k=64, k_splits=k_splits,
                                          interpret=False))(q, kc, vc, lengths)
  assert _rel(got, ref.softmax_decode_step(q, kc, vc, lengths)) < 1e-4
