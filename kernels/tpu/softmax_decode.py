"""Softmax decode step over a KV cache as a Pallas TPU (Mosaic) kernel.

`softmax_decode(q, k_cache, v_cache, lengths, scale, block_k, interpret)` has
the semantics of `kernels.reference.softmax_decode_step`: q [B, H, Dk], caches
[B, H, Lmax, D], lengths int [B] (1 <= length <= Lmax) -> [B, H, Dv].

Grid (B*H, Lmax/block_k), the cache axis sequential ('arbitrary'): each step
reads one [block_k, D] tile of k and v and updates the running max m, sum l
and accumulator [1, Dv] kept in VMEM scratch (online softmax); the last step
writes acc / l. The lengths are scalar-prefetched into SMEM: the cache index
maps clamp to the sequence's last valid tile, so tiles past the length are
neither fetched again (same block index -> no DMA) nor computed (pl.when).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels import reference as ref
from kernels.tpu import common

_NEG = 0.7 * float(jnp.finfo(jnp.float32).min)


def _kernel(len_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, acc_ref, *, scale, block_k, heads):
  """q_ref [1, Dk]; k_ref [bk, Dk]; v_ref [bk, Dv]; o_ref [1, Dv]; m_ref, l_ref [1, 1]; acc_ref [1, Dv]."""
  i, j = pl.program_id(0), pl.program_id(1)
  length = len_ref[i // heads]

  @pl.when(j == 0)
  def _init():
    m_ref[...] = jnp.full_like(m_ref, _NEG)
    l_ref[...] = jnp.zeros_like(l_ref)
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(j * block_k < length)
  def _step():
    dtype = k_ref.dtype
    prec = lax.Precision.HIGHEST if dtype == jnp.float32 else None
    q = (q_ref[...].astype(jnp.float32) * scale).astype(dtype)
    s = lax.dot_general(q, k_ref[...], (((1,), (1,)), ((), ())), precision=prec,
                        preferred_element_type=jnp.float32)             # [1, bk]
    pos = j * block_k + lax.broadcasted_iota(jnp.int32, s.shape, 1)
    s = jnp.where(pos < length, s, _NEG)
    m_prev = m_ref[...]                                                 # [1, 1]
    m_new = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
    p = jnp.exp(s - m_new)
    corr = jnp.exp(m_prev - m_new)
    l_ref[...] = corr * l_ref[...] + jnp.sum(p, axis=1, keepdims=True)
    m_ref[...] = m_new
    pv = jnp.dot(p.astype(dtype), v_ref[...], precision=prec, preferred_element_type=jnp.float32)
    acc_ref[...] = corr * acc_ref[...] + pv

  @pl.when(j == pl.num_programs(1) - 1)
  def _done():
    o_ref[...] = (acc_ref[...] / l_ref[...]).astype(o_ref.dtype)


def softmax_decode(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, lengths: jax.Array,
                   scale: float | None = None, block_k: int = 128, interpret: bool = False) -> jax.Array:
  """Softmax attention of one query token per sequence over a KV cache (Mosaic kernel).

  Args:
    q: [B, H, Dk]; k_cache: [B, H, Lmax, Dk]; v_cache: [B, H, Lmax, Dv];
    lengths: int [B], valid cache entries (1 <= length <= Lmax; not checked on device);
    scale: logit scale, default 1 / sqrt(Dk);
    block_k: cache rows per grid step, a multiple of 8 (16 for bfloat16) dividing Lmax;
    interpret: True -> TPU interpret mode (runs on CPU), False -> compiled (TPU only).
  Returns:
    [B, H, Dv] in v_cache.dtype.
  """
  ref.check_decode_softmax(q, k_cache, v_cache, lengths)
  b, h, lmax, dk = k_cache.shape
  dv = v_cache.shape[-1]
  rows = common.sublane_multiple(k_cache.dtype)
  if block_k <= 0 or block_k % rows or lmax % block_k:
    raise ValueError(f"block_k must be a positive multiple of {rows} dividing the cache length {lmax}, "
                     f"got {block_k}")
  common.check_backend(interpret)
  scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
  n = b * h

  def cache_map(i, j, len_ref):
    last = jnp.maximum(pl.cdiv(len_ref[i // h], block_k) - 1, 0)
    return i, jnp.minimum(j, last), 0

  row = lambda d: pl.BlockSpec((None, 1, d), lambda i, j, len_ref: (i, 0, 0))
  out = pl.pallas_call(
      functools.partial(_kernel, scale=scale, block_k=block_k, heads=h),
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=1,
          grid=(n, lmax // block_k),
          in_specs=[row(dk), pl.BlockSpec((None, block_k, dk), cache_map),
                    pl.BlockSpec((None, block_k, dv), cache_map)],
          out_specs=row(dv),
          scratch_shapes=[pltpu.VMEM((1, 1), jnp.float32),
                          pltpu.VMEM((1, 1), jnp.float32),
                          pltpu.VMEM((1, dv), jnp.float32)]),
      out_shape=jax.ShapeDtypeStruct((n, 1, dv), v_cache.dtype),
      compiler_params=common.compiler_params("parallel", "arbitrary"),
      interpret=common.interpret_params(interpret),
      name="softmax_decode_tpu",
  )(lengths.astype(jnp.int32), q.reshape(n, 1, dk), k_cache.reshape(n, lmax, dk), v_cache.reshape(n, lmax, dv))
  return out.reshape(b, h, dv)
