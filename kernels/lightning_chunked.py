"""Chunked (two-pass) lightning attention as Pallas Triton kernels, custom VJP.

Same semantics as `kernels.reference.lightning_attention_chunked` (q, k
[B, H, L, Dk], v [B, H, L, Dv], slopes [H], decay lambda_h = exp(-slopes[h])),
with the parallel scheme of Lightning Attention-2 / flash-linear-attention
instead of one program walking the sequence per (batch, head):
  1. block states, grid (B*H, N):   K_n = (lambda^(C-1-j) k_n)^T v_n   [Dk, Dv] f32
  2. prefix over blocks, grid (B*H, Dv/bv): S_0 = 0, S_n = lambda^C S_(n-1) + K_(n-1)
     (element-wise, one pass over the N states; no dots)
  3. outputs, grid (B*H, N):        o_n = (M * q_n k_n^T) v_n + (lambda^(i+1) q_n) S_n
Steps 1 and 3 run B*H*N programs (N = L / C), each a few [C, D] tensor-core
dots. The anti-causal variant (for dk, dv) uses the reversed decays and a
suffix in step 2. Backward: dq = causal(do, v, k), dk = anti-causal(v, do, q),
dv = anti-causal(k, q, do). Non-causal = causal + reversed causal - diagonal.
Slopes are constants (gradient zero).

Precision: dot operands take the input dtype (bfloat16 -> bf16 tensor cores)
and accumulate in float32; states S_n are float32 in memory and are rounded to
the input dtype only as the operand of q S_n. For float32 inputs
precision='ieee' (default) keeps IEEE fp32 dots, 'tf32' uses TF32 tensor cores
on GPU (interpret mode on CPU computes TF32 dots in full fp32).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from kernels import reference as ref

PRECISIONS = ("ieee", "tf32")


def _params(num_warps: int = 4, num_stages: int | None = None) -> plgpu.CompilerParams:
  # Explicit Triton params: since jax 0.10 a GPU pallas_call without them lowers to Mosaic GPU.
  return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def _mm(a, b, dtype, precision):
  """a @ b, operands cast to dtype, float32 accumulation."""
  prec = lax.Precision.HIGHEST if (dtype == jnp.float32 and precision == "ieee") else lax.Precision.DEFAULT
  return jnp.dot(a.astype(dtype), b.astype(dtype), precision=prec, preferred_element_type=jnp.float32)


def _pos(c, d):
  return lax.broadcasted_iota(jnp.int32, (c, d), 0).astype(jnp.float32)


def _state_kernel(s_ref, k_ref, v_ref, kv_ref, *, block, reverse, precision):
  """k_ref [C, Dk], v_ref [C, Dv] -> kv_ref [Dk, Dv] = sum_j decay_j k_j^T v_j (float32)."""
  s = s_ref[()]
  pos = _pos(block, k_ref.shape[-1])
  decay = jnp.exp(-s * pos) if reverse else jnp.exp(-s * (block - 1.0 - pos))
  k = k_ref[...].astype(jnp.float32) * decay
  kv_ref[...] = _mm(k.T, v_ref[...], v_ref.dtype, precision)


def _prefix_kernel(s_ref, kv_ref, st_ref, *, block, dk, num_blocks, reverse):
  """kv_ref, st_ref [N*Dk, bv]: st[n] = sum over earlier (later if reverse) blocks m of lambda^(C*dist) kv[m]."""
  a = jnp.exp(-s_ref[()] * block)

  def body(i, state):
    n = num_blocks - 1 - i if reverse else i
    sl = pl.ds(pl.multiple_of(n * dk, dk), dk)
    st_ref[sl, :] = state
    return a * state + kv_ref[sl, :]

  lax.fori_loop(0, num_blocks, body, jnp.zeros((dk, st_ref.shape[-1]), jnp.float32))


def _output_kernel(s_ref, q_ref, k_ref, v_ref, st_ref, o_ref, *, block, reverse, precision):
  """q_ref, k_ref [C, Dk]; v_ref, o_ref [C, Dv]; st_ref [Dk, Dv] state entering this block."""
  s = s_ref[()]
  c = block
  dtype = v_ref.dtype
  row = lax.broadcasted_iota(jnp.int32, (c, c), 0)
  col = lax.broadcasted_iota(jnp.int32, (c, c), 1)
  diff = col - row if reverse else row - col
  mask = jnp.where(diff >= 0, jnp.exp(-s * jnp.maximum(diff, 0).astype(jnp.float32)), 0.0)
  pos = _pos(c, q_ref.shape[-1])
  q_decay = jnp.exp(-s * (c - pos)) if reverse else jnp.exp(-s * (pos + 1.0))
  q = q_ref[...]
  scores = _mm(q, k_ref[...].T, dtype, precision) * mask
  o = _mm(scores, v_ref[...], dtype, precision)
  o += _mm(q.astype(jnp.float32) * q_decay, st_ref[...], dtype, precision)
  o_ref[...] = o.astype(o_ref.dtype)


def _call(q, k, v, slopes, block, interpret, precision, block_v, reverse=False):
  """(Anti-)causal chunked pass on inputs padded to the block -> [B, H, L, Dv] in v.dtype."""
  b, h, length, dk = q.shape
  dkk, dv = k.shape[-1], v.shape[-1]
  n = length // block
  bh = b * h
  bv = block_v if block_v else (32 if dv % 32 == 0 else dv)  # prefix: Dv split over programs
  sl = jnp.tile(slopes.astype(jnp.float32), b)
  qf, kf, vf = (x.reshape(bh, length, x.shape[-1]) for x in (q, k, v))
  scalar = pl.BlockSpec((None,), lambda i, j: (i,))
  tile = lambda d: pl.BlockSpec((None, block, d), lambda i, j: (i, j, 0))
  kv = pl.pallas_call(
      functools.partial(_state_kernel, block=block, reverse=reverse, precision=precision),
      grid=(bh, n),
      in_specs=[scalar, tile(dkk), tile(dv)],
      out_specs=pl.BlockSpec((None, dkk, dv), lambda i, j: (i, j, 0)),
      out_shape=jax.ShapeDtypeStruct((bh, n * dkk, dv), jnp.float32),
      interpret=interpret, compiler_params=_params(), name="lightning_chunk_states",
  )(sl, kf, vf)
  col = pl.BlockSpec((None, n * dkk, bv), lambda i, j: (i, 0, j))
  states = pl.pallas_call(
      functools.partial(_prefix_kernel, block=block, dk=dkk, num_blocks=n, reverse=reverse),
      grid=(bh, dv // bv),
      in_specs=[scalar, col],
      out_specs=col,
      out_shape=jax.ShapeDtypeStruct((bh, n * dkk, dv), jnp.float32),
      interpret=interpret, compiler_params=_params(num_warps=1), name="lightning_chunk_prefix",
  )(sl, kv)
  out = pl.pallas_call(
      functools.partial(_output_kernel, block=block, reverse=reverse, precision=precision),
      grid=(bh, n),
      in_specs=[scalar, tile(dk), tile(dkk), tile(dv), pl.BlockSpec((None, dkk, dv), lambda i, j: (i, j, 0))],
      out_specs=tile(dv),
      out_shape=jax.ShapeDtypeStruct((bh, length, dv), v.dtype),
      interpret=interpret, compiler_params=_params(), name="lightning_chunk_out",
  )(sl, qf, kf, vf, states)
  return out.reshape(b, h, length, dv)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _causal_padded(q, k, v, slopes, block, interpret, precision, block_v):
  return _call(q, k, v, slopes, block, interpret, precision, block_v)


def _causal_padded_fwd(q, k, v, slopes, block, interpret, precision, block_v):
  return _call(q, k, v, slopes, block, interpret, precision, block_v), (q, k, v, slopes)


def _causal_padded_bwd(block, interpret, precision, block_v, res, do):
  q, k, v, slopes = res
  do = do.astype(v.dtype)
  dq = _call(do, v, k, slopes, block, interpret, precision, None)  # Dv' = Dk here
  dk = _call(v, do, q, slopes, block, interpret, precision, None, reverse=True)  # Dv' = Dk here
  dv = _call(k, q, do, slopes, block, interpret, precision, block_v, reverse=True)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), jnp.zeros_like(slopes)


_causal_padded.defvjp(_causal_padded_fwd, _causal_padded_bwd)


def lightning_attention_chunked(q: jax.Array, k: jax.Array, v: jax.Array, slopes: jax.Array, causal: bool = True,
                                block_size: int = 64, interpret: bool = False,
                                precision: str | None = None, block_v: int | None = None) -> jax.Array:
  """Lightning attention, chunked two-pass Triton kernels (differentiable in q, k, v).

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv], float32 or bfloat16 (one dtype); any L (zero-padded to the block);
    slopes: [H] decay rates; causal: else symmetric decay lambda^|t-s|;
    block_size: C, tokens per block (a power of two >= 16 for the compiled GPU kernel);
    interpret: True -> Pallas interpret mode (CPU), False -> compiled Triton (GPU only);
    precision: float32 inputs only: 'ieee' (default) or 'tf32' dots; must be None for bfloat16;
    block_v: Dv columns per program of the prefix pass (default 32 when it divides Dv, else Dv).
  Returns:
    [B, H, L, Dv] in v.dtype, accumulated in float32.
  """
  ref.check_qkv(q, k, v, slopes)
  if not q.dtype == k.dtype == v.dtype or q.dtype not in (jnp.float32, jnp.bfloat16):
    raise ValueError(f"q, k, v must share one dtype, float32 or bfloat16; got {q.dtype}, {k.dtype}, {v.dtype}")
  if q.dtype == jnp.float32:
    precision = "ieee" if precision is None else precision
    if precision not in PRECISIONS:
      raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
  elif precision is not None:
    raise ValueError(f"precision={precision!r} applies to float32 inputs only; inputs are {q.dtype}")
  if block_size <= 0:
    raise ValueError(f"block_size must be positive, got {block_size}")
  if block_v is not None and (block_v <= 0 or v.shape[-1] % block_v):
    raise ValueError(f"block_v must divide Dv={v.shape[-1]}, got {block_v}")
  if not interpret and jax.default_backend() != "gpu":
    raise ValueError(f"the Triton kernel compiles only on GPU; backend is {jax.default_backend()!r}: "
                     "pass interpret=True")
  length = q.shape[2]

  def causal_fn(q, k, v):
    qp, kp, vp = (ref.pad_to_block(x, block_size) for x in (q, k, v))
    return _causal_padded(qp, kp, vp, slopes, block_size, interpret, precision, block_v)[:, :, :length]

  if causal:
    return causal_fn(q, k, v)
  return ref.bidirectional_from_causal(causal_fn, q, k, v).astype(v.dtype)
