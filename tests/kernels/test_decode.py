"""Decode kernels (softmax over a KV cache, linear recurrent state) vs float64 numpy references.

Every test body runs the Triton and the Mosaic kernel in each mode of this backend (tests/kernels/conftest.py):
interpret mode on CPU (TPU interpret mode for Mosaic), compiled on GPU / TPU. float32 tolerance 1e-4 relative
(as the former compiled-GPU tests); bfloat16 caches 1e-2 against float64 on the same rounded values.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention
from jax.sharding import AbstractDevice, AbstractMesh

from kernels import reference as ref
from kernels.linear_decode import linear_decode
from kernels.softmax_decode import softmax_decode


def _f64(x):
  return np.asarray(jnp.asarray(x, jnp.float32), np.float64)


def _rel(got, want):
  return np.linalg.norm(_f64(got) - want) / np.linalg.norm(want)


def _normal(i, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(i), shape).astype(dtype)


def _np_softmax_decode(q, kc, vc, lengths, scale):
  q, kc, vc = _f64(q), _f64(kc), _f64(vc)
  out = np.zeros(q.shape[:2] + vc.shape[-1:])
  for b, n in enumerate(np.asarray(lengths)):
    s = np.einsum("hd,hld->hl", q[b], kc[b, :, :n]) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    out[b] = np.einsum("hl,hld->hd", p / p.sum(-1, keepdims=True), vc[b, :, :n])
  return out


def _softmax(case, *args, **kw):
  impl, interpret = case
  return jax.jit(lambda *a: softmax_decode(*a, impl=impl, interpret=interpret, **kw))(*args)


def test_linear_decode_steps_match_full_attention(decode_case):
  """Stepping the recurrent state reproduces causal decayed attention (float64), including a head with no
  decay and one whose decay (e^-40) forgets everything but the current token."""
  impl, interpret = decode_case
  b, h, dk, dv, steps = 2, 3, 16, 8, 5
  s = jnp.array([0.0, 0.5, 40.0])
  q, k, v = _normal(0, (b, h, steps, dk)), _normal(1, (b, h, steps, dk)) * 1e-2, _normal(2, (b, h, steps, dv)) * 1e3
  t = np.arange(steps)
  w = np.where(t[:, None] >= t[None], np.exp(-np.asarray(s)[:, None, None] * (t[:, None] - t[None])), 0.0)
  full = np.einsum("hts,bhts,bhse->bhte", w, np.einsum("bhtd,bhsd->bhts", _f64(q), _f64(k)), _f64(v))
  step = jax.jit(lambda *a: linear_decode(*a, impl=impl, interpret=interpret))
  state = jnp.zeros((b, h, dk, dv))
  for i in range(steps):
    o, state = step(q[:, :, i], k[:, :, i], v[:, :, i], state, s)
    for head in range(h):
      assert _rel(o[:, head], full[:, head, i]) < 1e-4
  want = np.einsum("hs,bhsd,bhse->bhde", w[:, -1], _f64(k), _f64(v))
  for head in range(h):
    assert _rel(state[:, head], want[:, head]) < 1e-4


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_softmax_decode_matches_float64(decode_case, dtype):
  b, h, lmax, dk, dv = 3, 2, 64, 16, 8
  q = _normal(3, (b, h, dk), dtype) * 4.0  # peaked softmax
  kc, vc = _normal(4, (b, h, lmax, dk), dtype), _normal(5, (b, h, lmax, dv), dtype)
  lengths = jnp.array([1, 21, 64])  # one entry; mid-block; whole cache
  got = _softmax(decode_case, q, kc, vc, lengths, block_k=16)
  assert got.dtype == dtype
  assert _rel(got, _np_softmax_decode(q, kc, vc, lengths, dk ** -0.5)) < (1e-4 if dtype == jnp.float32 else 1e-2)
  # Entries past the length must not matter.
  kc2, vc2 = kc.at[:, :, 21:].set(1e3), vc.at[:, :, 21:].set(-1e3)
  got2 = _softmax(decode_case, q, kc2.at[2].set(kc[2]), vc2.at[2].set(vc[2]), lengths, block_k=16)
  np.testing.assert_array_equal(got2, got)


def test_softmax_decode_k_splits():
  b, h, lmax, d = 2, 2, 64, 16
  q, kc, vc = _normal(6, (b, h, d)), _normal(7, (b, h, lmax, d)), _normal(8, (b, h, lmax, d))
  lengths = jnp.array([21, 64])  # 21: the second split of sequence 0 is empty
  got = _softmax(("triton", True), q, kc, vc, lengths, block_k=16, k_splits=2)
  assert _rel(got, _np_softmax_decode(q, kc, vc, lengths, d ** -0.5)) < 1e-4


def test_mosaic_decode_agrees_with_jax_paged_attention():
  """Our Mosaic KV-cache decode vs jax's TPU paged attention, both in TPU interpret mode, on the same cache laid
  out as shuffled pages. jax's kernel is itself only ~1e-2 accurate in interpret mode (measured here, abs error
  ~2e-3 vs float64), ours 1e-5: the agreement bound is 2e-2."""
  b, h, d, page, pages_per_seq = 2, 2, 128, 16, 4
  lmax = page * pages_per_seq
  q, kc, vc = _normal(9, (b, h, d)), _normal(10, (b, h, lmax, d)), _normal(11, (b, h, lmax, d))
  lengths = jnp.array([21, 64], jnp.int32)
  scale = d ** -0.5
  ours = softmax_decode(q, kc, vc, lengths, block_k=page, impl="mosaic", interpret=True)
  perm = np.random.default_rng(0).permutation(b * pages_per_seq)  # physical page of logical page j
  to_pages = lambda c: c.transpose(1, 0, 2, 3).reshape(h, b * pages_per_seq, page, d)[:, np.argsort(perm)]
  page_indices = jnp.asarray(perm.reshape(b, pages_per_seq), jnp.int32)
  with pltpu.force_tpu_interpret_mode(pltpu.InterpretParams()):
    theirs = paged_attention(q * scale, to_pages(kc), to_pages(vc), lengths, page_indices,
                             pages_per_compute_block=2)
  want = _np_softmax_decode(q, kc, vc, lengths, scale)
  assert _rel(ours, want) < 1e-5
  assert _rel(theirs, want) < 2e-2
  assert _rel(ours, _f64(theirs)) < 2e-2


def test_dispatch_and_bad_inputs():
  q = jnp.zeros((1, 2, 8))
  kc = jnp.zeros((1, 2, 40, 8))
  with pytest.raises(ValueError, match="multiple of block_k"):
    softmax_decode(q, kc, kc, jnp.array([3]), block_k=16, impl="triton", interpret=True)
  with pytest.raises(ValueError, match="lengths"):
    softmax_decode(q, kc, kc, jnp.array([3, 4]), block_k=8, interpret=True)
  with pytest.raises(ValueError, match="multiple of 8"):
    softmax_decode(q, kc, kc, jnp.array([3]), block_k=20, impl="mosaic", interpret=True)
  with pytest.raises(ValueError, match="k_splits"):
    softmax_decode(q, kc, kc, jnp.array([3]), block_k=8, k_splits=2, impl="mosaic", interpret=True)
  with pytest.raises(ValueError, match="impl"):
    softmax_decode(q, kc, kc, jnp.array([3]), impl="paged")
  with pytest.raises(ValueError, match="state"):
    linear_decode(q, q, q, jnp.zeros((1, 2, 8, 5)), jnp.ones(2), impl="mosaic", interpret=True)
  with pytest.raises(ValueError, match="no effect"):
    linear_decode(q, q, q, jnp.zeros((1, 2, 8, 8)), jnp.ones(2), impl="reference", interpret=True)
  o, st = linear_decode(q + 1, q + 1, q + 1, jnp.ones((1, 2, 8, 8)), jnp.ones(2), impl="reference")
  o2, st2 = ref.linear_decode_step(q + 1, q + 1, q + 1, jnp.ones((1, 2, 8, 8)), jnp.ones(2))
  np.testing.assert_array_equal(o, o2)
  np.testing.assert_array_equal(st, st2)
  if jax.default_backend() == "cpu":
    with pytest.raises(ValueError, match="compiles only on TPU"):
      linear_decode(q, q, q, jnp.zeros((1, 2, 8, 8)), jnp.ones(2), impl="mosaic", interpret=False)


@pytest.mark.parametrize("impl", ["triton", "mosaic"])
def test_decode_kernels_lower_without_device(impl, monkeypatch):
  """Both decode kernels lower to Triton IR (cuda) / Mosaic (TPU v5e) from any host (no device compiler run)."""
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu" if impl == "mosaic" else "gpu")
  q, kc, st = jnp.zeros((2, 2, 128)), jnp.zeros((2, 2, 512, 128)), jnp.zeros((2, 2, 128, 128))
  s = ref.decay_slopes(2)

  def f(q, kc, st):
    o = softmax_decode(q, kc, kc, jnp.array([3, 512]), block_k=128, impl=impl, interpret=False)
    return o, linear_decode(q, q, q, st, s, impl=impl, interpret=False)
  mesh = AbstractMesh((1,), ("x",), abstract_device=AbstractDevice(device_kind="TPU v5 lite", num_cores=1,
                                                                   platform="tpu"))
  with jax.sharding.use_abstract_mesh(mesh):
    text = jax.jit(f).trace(q, kc, st).lower(lowering_platforms=("tpu" if impl == "mosaic" else "cuda",)).as_text()
  assert text.count("tpu_custom_call" if impl == "mosaic" else "xla.gpu.triton") >= 2
