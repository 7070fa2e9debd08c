"""Pallas softmax decode step over a KV cache (flash-decoding, split-k).

Public function `softmax_decode(q, k_cache, v_cache, lengths, scale,
block_k, k_splits, interpret, impl)`, same semantics as
`kernels.reference.softmax_decode_step`: q [B, H, Dk], caches
[B, H, Lmax, D] (our layout: heads before sequence), lengths int [B] valid
entries per sequence (>= 1). Returns [B, H, Dv]. It dispatches by backend:
impl 'triton' (this file's kernel; GPU, or interpret mode on CPU), 'mosaic'
(kernels/tpu/softmax_decode.py; TPU, or TPU interpret mode) or 'reference'.

Grid (B * H, k_splits): each program runs an online softmax over its slice
of the cache in blocks of `block_k`, stopping at the sequence's length (no
work on the unused tail of the cache); the k_splits partial results
(o, max, sum) are merged in jnp.

How it differs from jax's `jax.experimental.pallas.ops.gpu.decode_attention`
(`mqa` / `gqa`, used as the baseline in experiments/bench_attention.py):
jax's kernel serves MQA/GQA with caches [B, S, (Hkv,) D] and processes
`block_h` query heads that share one kv head per program with tensor-core
dots; ours is multi-head attention on [B, H, Lmax, D] caches (one kv head per
query head, as `mtl.nn.attention.SoftmaxAttention` stores them), one head per
program, with a vector (broadcast-multiply-reduce) q.k since there is one
query row; both take per-sequence lengths and split the sequence over
programs.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from kernels import reference as ref
from kernels.gqa_decode import gqa_decode
from kernels.tpu.softmax_decode import softmax_decode as softmax_decode_tpu
from kernels.lightning_attention import default_interpret

_NEG = 0.7 * float(jnp.finfo(jnp.float32).min)


def _kernel(len_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, *, scale,
            block_k, split_len):
  split = pl.program_id(1)
  start = split * split_len
  length = len_ref[()]
  q = q_ref[...].astype(jnp.float32) * scale
  dv = v_ref.shape[-1]
  idx = lax.broadcasted_iota(jnp.int32, (block_k,), 0)

  def body(i, carry):
    o, m, l = carry
    sl = pl.ds(pl.multiple_of(i * block_k, block_k), block_k)
    kb = k_ref[sl, :].astype(jnp.float32)
    vb = v_ref[sl, :].astype(jnp.float32)
    s = jnp.sum(kb * q[None, :], axis=1)               # [block_k]
    s = jnp.where(start + i * block_k + idx < length, s, _NEG)
    m_new = jnp.maximum(m, jnp.max(s))
    p = jnp.exp(s - m_new)
    corr = jnp.exp(m - m_new)
    o = corr * o + jnp.sum(p[:, None] * vb, axis=0)
    return o, m_new, corr * l + jnp.sum(p)

  n_iter = jnp.clip(pl.cdiv(length - start, block_k), 0, split_len // block_k)
  init = (jnp.zeros((dv,), jnp.float32), jnp.float32(_NEG), jnp.float32(0.0))
  o, m, l = lax.fori_loop(0, n_iter, body, init)
  o_ref[...] = o
  m_ref[...] = jnp.full((1,), m, jnp.float32)
  l_ref[...] = jnp.full((1,), l, jnp.float32)


IMPLS = ("triton", "mosaic", "reference")


def softmax_decode(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array,
                   lengths: jax.Array, scale: float | None = None,
                   block_k: int = 64, k_splits: int = 1,
                   interpret: bool | None = None,
                   impl: str | None = None) -> jax.Array:
  """Softmax attention of one query token per sequence over a KV cache.

  Args:
    q: [B, H, Dk]; k_cache: [B, H, Lmax, Dk]; v_cache: [B, H, Lmax, Dv];
    lengths: int [B], valid cache entries (1 <= length <= Lmax);
    scale: logit scale, default 1 / sqrt(Dk);
    block_k: cache rows per inner step (per grid step for 'mosaic': a
      multiple of 8, 16 for bfloat16); k_splits: 'triton' only, programs per
      (b, h) along the cache (Lmax must divide into k_splits * block_k).
    interpret: None -> interpret on CPU, compiled elsewhere.
    impl: None -> 'mosaic' on TPU, else 'triton'; or 'reference' (jnp).
  Returns:
    [B, H, Dv] in v_cache.dtype.
  Grouped caches (q heads H a multiple of the caches' Hkv < H: GQA / MQA) go
  to `kernels.gqa_decode.gqa_decode`, one program per KV head and split
  serving its whole query group.
  """
  ref.check_decode_softmax(q, k_cache, v_cache, lengths)
  impl = ("mosaic" if jax.default_backend() == "tpu" else "triton") if impl is None else impl
  if impl not in IMPLS:
    raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")
  if k_splits != 1 and impl != "triton":
    raise ValueError(f"k_splits applies to impl='triton' only, not {impl!r}")
  if impl == "reference":
    if interpret:
      raise ValueError("impl='reference' is plain jnp: interpret=True has no effect")
    return ref.softmax_decode_step(q, k_cache, v_cache, lengths, scale=scale)
  grouped = q.shape[1] != k_cache.shape[1]
  if grouped and impl == "mosaic":
    raise ValueError("grouped (GQA / MQA) caches have no Mosaic TPU decode kernel yet; use impl='triton' "
                     "(kernels.gqa_decode) or 'reference'")
  if impl == "mosaic":
    return softmax_decode_tpu(q, k_cache, v_cache, lengths, scale=scale,
                              block_k=block_k,
                              interpret=default_interpret(interpret))
  if grouped:
    return gqa_decode(q, k_cache, v_cache, lengths, scale=scale, block_k=block_k,
                      k_splits=k_splits, interpret=interpret)
  b, h, lmax, dk = k_cache.shape
  dv = v_cache.shape[-1]
  if block_k <= 0 or k_splits <= 0:
    raise ValueError(f"block_k and k_splits must be positive, got "
                     f"{block_k}, {k_splits}")
  if lmax % (block_k * k_splits):
    raise ValueError(f"cache length {lmax} must be a multiple of block_k * "
                     f"k_splits = {block_k * k_splits}")
  interpret = default_interpret(interpret)
  scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
  n = b * h
  split_len = lmax // k_splits
  kernel = functools.partial(_kernel, scale=scale, block_k=block_k,
                             split_len=split_len)
  cache = lambda d: pl.BlockSpec((None, split_len, d), lambda i, j: (i, j, 0))
  o, m, l = pl.pallas_call(
      kernel,
      grid=(n, k_splits),
      in_specs=[pl.BlockSpec((None,), lambda i, j: (i,)),
                pl.BlockSpec((None, dk), lambda i, j: (i, 0)),
                cache(dk), cache(dv)],
      out_specs=[pl.BlockSpec((None, None, dv), lambda i, j: (i, j, 0)),
                 pl.BlockSpec((None, None, 1), lambda i, j: (i, j, 0)),
                 pl.BlockSpec((None, None, 1), lambda i, j: (i, j, 0))],
      out_shape=[jax.ShapeDtypeStruct((n, k_splits, dv), jnp.float32),
                 jax.ShapeDtypeStruct((n, k_splits, 1), jnp.float32),
                 jax.ShapeDtypeStruct((n, k_splits, 1), jnp.float32)],
      interpret=interpret,
      compiler_params=plgpu.CompilerParams(),  # Triton (jax >= 0.10 defaults to Mosaic GPU)
      name="softmax_decode",
  )(jnp.repeat(lengths.astype(jnp.int32), h), q.reshape(n, dk),
    k_cache.reshape(n, lmax, dk), v_cache.reshape(n, lmax, dv))
  m_all = jnp.max(m, axis=1, keepdims=True)
  w = jnp.exp(m - m_all)                                 # [n, splits, 1]
  out = jnp.sum(o * w, axis=1) / jnp.sum(l * w, axis=1)
  return out.reshape(b, h, dv).astype(v_cache.dtype)
