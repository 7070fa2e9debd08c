"""Lightning attention kernels (Triton serial / chunked, Mosaic) vs a float64 numpy reference.

Each test body runs every kernel in every mode of this backend (tests/kernels/conftest.py): interpret mode on
CPU, compiled on GPU (Triton) or TPU (Mosaic). Tolerances (relative L2 error vs float64):
  float32 inputs: 1e-4 (outputs and q, k, v gradients);
  bfloat16 inputs: 2e-2 vs the float64 result on the same bf16-rounded inputs (operands of every dot are
  rounded to bf16, e.g. the scores, the decayed q and the float32 state; accumulation is float32).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractDevice, AbstractMesh

from kernels import reference as ref
from kernels.lightning_attention import lightning_attention

TOL = {jnp.float32: 1e-4, jnp.bfloat16: 2e-2}


def _np_lightning(q, k, v, slopes, causal, ct):
  """float64 o = (W * q k^T) v with W_h[t, s] = exp(-slopes[h] |t - s|) (0 for s > t if causal), and the
  gradients of sum(o * ct) w.r.t. q, k, v."""
  q, k, v, ct = (np.asarray(jnp.asarray(x, jnp.float32), np.float64) for x in (q, k, v, ct))
  t = np.arange(q.shape[2])
  d = t[:, None] - t[None, :]
  w = np.exp(-np.asarray(slopes, np.float64)[:, None, None] * np.abs(d))
  if causal:
    w = np.where(d >= 0, w, 0.0)
  a = w * np.einsum("bhtd,bhsd->bhts", q, k)
  g = w * np.einsum("bhte,bhse->bhts", ct, v)
  return (np.einsum("bhts,bhse->bhte", a, v), np.einsum("bhts,bhsd->bhtd", g, k),
          np.einsum("bhts,bhtd->bhsd", g, q), np.einsum("bhts,bhte->bhse", a, ct))


def _rel(got, want, per_head=False):
  """Relative L2 error (the largest over heads if per_head)."""
  got = np.asarray(jnp.asarray(got, jnp.float32), np.float64)
  if per_head:
    return max(_rel(got[:, h], want[:, h]) for h in range(got.shape[1]))
  return np.linalg.norm(got - want) / np.linalg.norm(want)


def _inputs(length, dtype=jnp.float32, b=1, h=2, dk=16, dv=8, seed=0):
  ks = jax.random.split(jax.random.key(seed), 4)
  q, k = (jax.random.normal(kk, (b, h, length, dk)).astype(dtype) for kk in ks[:2])
  v = jax.random.normal(ks[2], (b, h, length, dv)).astype(dtype)
  return q, k, v, jax.random.normal(ks[3], (b, h, length, dv)).astype(dtype)


def _run(case, q, k, v, ct, slopes, causal, block_size=16, **kw):
  """(o, dq, dk, dv) of the kernel, forward and VJP in one jit."""
  impl, interpret = case

  def f(q, k, v, ct):
    o, vjp = jax.vjp(lambda q, k, v: lightning_attention(
        q, k, v, slopes, causal=causal, block_size=block_size, impl=impl, interpret=interpret, **kw), q, k, v)
    return (o, *vjp(ct))
  return jax.jit(f)(q, k, v, ct)


@pytest.mark.parametrize("causal", [True, False])
def test_matches_float64_reference(lightning_case, causal):
  q, k, v, ct = _inputs(40)  # 40: not a multiple of the block (16)
  s = ref.decay_slopes(2, base=4.0)
  got = _run(lightning_case, q, k, v, ct, s, causal)
  for g, w in zip(got, _np_lightning(q, k, v, s, causal, ct)):
    assert g.shape == w.shape and g.dtype == jnp.float32
    assert _rel(g, w) < TOL[jnp.float32]


def test_bfloat16_inputs(lightning_case):
  if lightning_case[0] == "triton_serial":
    pytest.skip("the serial kernel computes in float32 whatever the input dtype (covered by the float32 tests)")
  q, k, v, ct = _inputs(48, jnp.bfloat16, seed=1)
  s = ref.decay_slopes(2, base=4.0)
  got = _run(lightning_case, q, k, v, ct, s, True)
  assert got[0].dtype == jnp.bfloat16
  for g, w in zip(got, _np_lightning(q, k, v, s, True, ct)):
    assert _rel(g, w) < TOL[jnp.bfloat16]


def test_degenerate_decays_and_scales(lightning_case):
  """No decay (sums grow with L), decay so fast only the diagonal survives (lambda = e^-40), inputs spanning
  10 orders of magnitude, and a sequence shorter than one block."""
  q, k, v, ct = _inputs(5, seed=2)
  q, k, v = q * 1e3, k * 1e-3, v * 1e4
  s = jnp.array([0.0, 40.0])
  got = _run(lightning_case, q, k, v, ct, s, True)
  want = _np_lightning(q, k, v, s, True, ct)
  for g, w in zip(got, want):
    assert _rel(g, w, per_head=True) < TOL[jnp.float32]
  diag = np.sum(np.asarray(q[:, 1], np.float64) * np.asarray(k[:, 1]), -1, keepdims=True) * np.asarray(v[:, 1])
  np.testing.assert_allclose(got[0][:, 1], diag, rtol=1e-4)


@pytest.mark.parametrize("impl", ["triton_serial", "triton_chunked"])
def test_block_v_split(impl):
  q, k, v, ct = _inputs(24, dv=16, seed=3)
  s = ref.decay_slopes(2)
  got = _run((impl, True), q, k, v, ct, s, True, block_size=8, block_v=8)
  for g, w in zip(got, _np_lightning(q, k, v, s, True, ct)):
    assert _rel(g, w) < TOL[jnp.float32]


def test_fused_backward_of_serial_kernel():
  q, k, v, ct = _inputs(32, seed=4)
  s = ref.decay_slopes(2, base=4.0)
  got = _run(("triton_serial", True), q, k, v, ct, s, True, bwd="fused")
  for g, w in zip(got, _np_lightning(q, k, v, s, True, ct)):
    assert _rel(g, w) < TOL[jnp.float32]


def test_reference_impl_and_bad_arguments():
  q, k, v, _ = _inputs(16)
  s = ref.decay_slopes(2)
  np.testing.assert_allclose(lightning_attention(q, k, v, s, impl="reference"),
                             ref.lightning_attention_chunked(q, k, v, s), rtol=1e-6)
  bad = [(dict(slopes=s[:1]), "slopes"), (dict(block_size=-1), "block_size"), (dict(impl="cuda"), "impl"),
         (dict(bwd="triton"), "bwd"), (dict(impl="triton_chunked", bwd="split"), "bwd"),
         (dict(impl="mosaic", block_v=8), "block_v"), (dict(precision="tf32"), "precision"),
         (dict(impl="mosaic", block_size=12, interpret=True), "multiple of 8"),
         (dict(impl="reference", interpret=True), "no effect"),
         (dict(impl="triton_chunked", precision="fp8", interpret=True), "precision")]
  for kw, match in bad:
    kw = {"slopes": s, **kw}
    with pytest.raises(ValueError, match=match):
      lightning_attention(q, k, v, **kw)
  with pytest.raises(ValueError, match="float32 inputs only"):
    lightning_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), s, impl="triton_chunked", precision="tf32",
                        interpret=True)
  if jax.default_backend() == "cpu":
    for impl in ("triton_serial", "triton_chunked", "mosaic"):
      with pytest.raises(ValueError, match="compiles only on"):
        lightning_attention(q, k, v, s, impl=impl, interpret=False)


_TPU = AbstractMesh((1,), ("x",), abstract_device=AbstractDevice(device_kind="TPU v5 lite", num_cores=1,
                                                                  platform="tpu"))


@pytest.mark.parametrize("impl,dtype", [("triton_serial", jnp.float32), ("triton_chunked", jnp.float32),
                                        ("triton_chunked", jnp.bfloat16), ("mosaic", jnp.float32),
                                        ("mosaic", jnp.bfloat16)])
def test_compiled_kernels_lower_without_device(impl, dtype, monkeypatch):
  """Forward + backward lower to Triton IR (cuda) / Mosaic (TPU v5e) from any host: catches block shapes and
  ops the compiled backends reject before a GPU/TPU run (it does not run the device compiler)."""
  platform = "tpu" if impl == "mosaic" else "cuda"
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu" if impl == "mosaic" else "gpu")
  q = jnp.zeros((1, 2, 192, 64), dtype)
  s = ref.decay_slopes(2)
  loss = lambda q, k, v: jnp.sum(lightning_attention(q, k, v, s, block_size=64, impl=impl, interpret=False)
                                 .astype(jnp.float32))
  with jax.sharding.use_abstract_mesh(_TPU):
    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, q, q).lower(lowering_platforms=(platform,)).as_text()
  assert ("tpu_custom_call" if impl == "mosaic" else "xla.gpu.triton") in text  # not Mosaic GPU
