"""Lightning attention as a Pallas TPU (Mosaic) kernel with a custom VJP.

`lightning_attention(q, k, v, slopes, causal, block_size, interpret)` has the
semantics of `kernels.reference.lightning_attention_chunked`: q, k [B, H, L, Dk],
v [B, H, L, Dv], slopes [H], per-token decay lambda_h = exp(-slopes[h]).

Grid (B*H, L/C): the block axis is sequential ('arbitrary') and carries the
[Dk, Dv] float32 kv state in VMEM scratch; each step sees one [C, D] tile of
q, k, v (C a multiple of 8 rows, D the whole head dim), so VMEM use is
independent of L. Per block (causal):
  o = (M * q k^T) v + (lambda^(i+1) q) S,   S <- lambda^C S + (lambda^(C-1-j) k)^T v
The anti-causal variant (used by the backward) walks the blocks in reverse
through its index maps. Backward: dq = causal(do, v, k), dk = anti-causal(v,
do, q), dv = anti-causal(k, q, do). Non-causal (lambda^|t-s|) = causal +
reversed causal - diagonal. Slopes are constants (gradient zero).

Dots take the input dtype (bfloat16 on the MXU, float32 at HIGHEST precision)
and accumulate in float32; the state stays float32 and is rounded to the
input dtype only as a dot operand.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels import reference as ref
from kernels.tpu import common


def _mm(a, b, dtype):
  """a @ b with operands in dtype, float32 accumulation."""
  prec = lax.Precision.HIGHEST if dtype == jnp.float32 else lax.Precision.DEFAULT
  return jnp.dot(a.astype(dtype), b.astype(dtype), precision=prec, preferred_element_type=jnp.float32)


def _kernel(s_ref, a_ref, q_ref, k_ref, v_ref, o_ref, state_ref, *, block, reverse):
  """q_ref, k_ref [C, Dk]; v_ref, o_ref [C, Dv]; state_ref VMEM [Dk, Dv] f32; s_ref, a_ref SMEM [B*H]: rates s
  and block decays exp(-s C) (computed outside: the scalar unit has no exp)."""
  @pl.when(pl.program_id(1) == 0)
  def _init():
    state_ref[...] = jnp.zeros_like(state_ref)

  s = s_ref[pl.program_id(0)]
  c = block
  dtype = q_ref.dtype
  row = lax.broadcasted_iota(jnp.int32, (c, c), 0)
  col = lax.broadcasted_iota(jnp.int32, (c, c), 1)
  diff = (row - col) if not reverse else (col - row)  # query - key distance (reversed: key - query)
  mask = jnp.where(diff >= 0, jnp.exp(-s * jnp.maximum(diff, 0).astype(jnp.float32)), 0.0)
  dk = q_ref.shape[-1]
  pos_q = lax.broadcasted_iota(jnp.int32, (c, dk), 0).astype(jnp.float32)
  pos_k = lax.broadcasted_iota(jnp.int32, (c, k_ref.shape[-1]), 0).astype(jnp.float32)
  if reverse:
    q_decay = jnp.exp(-s * (c - pos_q))        # lambda^(C-i)
    k_decay = jnp.exp(-s * pos_k)              # lambda^j
  else:
    q_decay = jnp.exp(-s * (pos_q + 1.0))      # lambda^(i+1)
    k_decay = jnp.exp(-s * (c - 1.0 - pos_k))  # lambda^(C-1-j)

  q = q_ref[...].astype(jnp.float32)
  k = k_ref[...].astype(jnp.float32)
  v = v_ref[...]
  state = state_ref[...]
  scores = lax.dot_general(q.astype(dtype), k.astype(dtype), (((1,), (1,)), ((), ())),
                           precision=lax.Precision.HIGHEST if dtype == jnp.float32 else None,
                           preferred_element_type=jnp.float32) * mask
  o = _mm(scores, v, dtype) + _mm(q * q_decay, state, dtype)
  o_ref[...] = o.astype(o_ref.dtype)
  state_ref[...] = a_ref[pl.program_id(0)] * state + _mm((k * k_decay).T, v, dtype)


def _call(q, k, v, slopes, block, interpret, reverse=False):
  """(Anti-)causal pass on inputs padded to the block -> [B, H, L, Dv] in v.dtype."""
  b, h, length, dk = q.shape
  dv = v.shape[-1]
  n = length // block
  blk = (lambda i, j: (i, n - 1 - j, 0)) if reverse else (lambda i, j: (i, j, 0))
  rates = jnp.tile(slopes.astype(jnp.float32), b)  # [B*H], batch-major
  out = pl.pallas_call(
      functools.partial(_kernel, block=block, reverse=reverse),
      grid=(b * h, n),
      in_specs=[common.smem_spec(), common.smem_spec(),
                pl.BlockSpec((None, block, dk), blk),
                pl.BlockSpec((None, block, k.shape[-1]), blk),
                pl.BlockSpec((None, block, dv), blk)],
      out_specs=pl.BlockSpec((None, block, dv), blk),
      out_shape=jax.ShapeDtypeStruct((b * h, length, dv), v.dtype),
      scratch_shapes=[pltpu.VMEM((k.shape[-1], dv), jnp.float32)],
      compiler_params=common.compiler_params("parallel", "arbitrary"),
      interpret=common.interpret_params(interpret),
      name="lightning_tpu_rev" if reverse else "lightning_tpu",
  )(rates, jnp.exp(-rates * block), *(x.reshape(b * h, length, x.shape[-1]) for x in (q, k, v)))
  return out.reshape(b, h, length, dv)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _causal_padded(q, k, v, slopes, block, interpret):
  return _call(q, k, v, slopes, block, interpret)


def _causal_padded_fwd(q, k, v, slopes, block, interpret):
  return _call(q, k, v, slopes, block, interpret), (q, k, v, slopes)


def _causal_padded_bwd(block, interpret, res, do):
  q, k, v, slopes = res
  do = do.astype(v.dtype)
  dq = _call(do, v, k, slopes, block, interpret)
  dk = _call(v, do, q, slopes, block, interpret, reverse=True)
  dv = _call(k, q, do, slopes, block, interpret, reverse=True)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), jnp.zeros_like(slopes)


_causal_padded.defvjp(_causal_padded_fwd, _causal_padded_bwd)


def lightning_attention(q: jax.Array, k: jax.Array, v: jax.Array, slopes: jax.Array, causal: bool = True,
                        block_size: int = 64, interpret: bool = False) -> jax.Array:
  """Lightning attention, Mosaic kernel (differentiable in q, k, v).

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv] (float32 or bfloat16; any L, zero-padded to the block);
    slopes: [H] decay rates; causal: else symmetric decay lambda^|t-s|;
    block_size: C rows per grid step, a multiple of 8 (16 for bfloat16 inputs);
    interpret: True -> TPU interpret mode (runs on CPU), False -> compiled (TPU only).
  Returns:
    [B, H, L, Dv] in v.dtype, accumulated in float32.
  """
  ref.check_qkv(q, k, v, slopes)
  rows = common.sublane_multiple(q.dtype)
  if block_size <= 0 or block_size % rows:
    raise ValueError(f"block_size must be a positive multiple of {rows} for {jnp.dtype(q.dtype).name} on TPU, "
                     f"got {block_size}")
  common.check_backend(interpret)
  length = q.shape[2]

  def causal_fn(q, k, v):
    qp, kp, vp = (ref.pad_to_block(x, block_size) for x in (q, k, v))
    return _causal_padded(qp, kp, vp, slopes, block_size, interpret)[:, :, :length]

  if causal:
    return causal_fn(q, k, v)
  return ref.bidirectional_from_causal(causal_fn, q, k, v).astype(v.dtype)
