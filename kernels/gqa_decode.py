"""Pallas grouped-query softmax decode step (flash-decoding with a fixed split of the cache).

Public function `gqa_decode(q, k_cache, v_cache, lengths, scale, block_k, k_splits, interpret)`, same
semantics as `kernels.reference.softmax_decode_step`: q [B, H, Dk], caches [B, Hkv, Lmax, D] with H a
multiple of Hkv (query head h reads KV head h // G, G = H / Hkv), lengths int [B] (>= 1). Returns
[B, H, Dv].

Grid (B * Hkv, k_splits): a program serves the whole query group of one KV head: it loads each block
of `block_k` cache rows once and scores all G queries against it with one [G, Dk] x [Dk, block_k] dot
(the cache is read once per KV head, not once per query head), running an online softmax over its
1/k_splits slice of the cache and stopping at the sequence's length. The k_splits partial results
(o, max, sum) are merged exactly in jnp (`merge_partials`). On GPU the group is zero-padded to 16 rows
(the smallest tensor-core dot); in interpret mode it is not padded.

`kernels.softmax_decode.softmax_decode` sends grouped caches here; `kernels.lean_decode` splits the
cache over programs by work instead of by a fixed `k_splits` and shares `block_update`.
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
from kernels.lightning_attention import default_interpret

NEG = 0.7 * float(jnp.finfo(jnp.float32).min)


def block_update(q: jax.Array, kb: jax.Array, vb: jax.Array, valid: jax.Array,
                 carry: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One online-softmax step: q [G, Dk] (pre-scaled) over a block kb [bk, Dk], vb [bk, Dv] whose rows
  `valid` [bk] are real; carry (o [G, Dv] unnormalised, m [G] running max, l [G] running sum)."""
  o, m, l = carry
  s = lax.dot_general(q, kb, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)  # [G, bk]
  s = jnp.where(valid[None, :], s, NEG)
  m_new = jnp.maximum(m, jnp.max(s, axis=1))
  p = jnp.exp(s - m_new[:, None])
  corr = jnp.exp(m - m_new)
  o = corr[:, None] * o + lax.dot_general(p, vb, (((1,), (0,)), ((), ())),
                                          preferred_element_type=jnp.float32)
  return o, m_new, corr * l + jnp.sum(p, axis=1)


def merge_partials(o: jax.Array, m: jax.Array, l: jax.Array, axis: int) -> jax.Array:
  """Exact merge of partial softmax results along `axis`: o [..., Dv], m, l [...] -> sum_i e^(m_i - M) o_i /
  sum_i e^(m_i - M) l_i with M = max_i m_i (empty partials: m = NEG, l = 0, o = 0 add nothing)."""
  m_all = jnp.max(m, axis=axis, keepdims=True)
  w = jnp.exp(m - m_all)
  return jnp.sum(o * w[..., None], axis=axis) / jnp.sum(l * w, axis=axis)[..., None]


def pad_group(q: jax.Array, interpret: bool) -> jax.Array:
  """q [R, G, Dk] zero-padded along G to 16 rows (a power of two >= 16) when compiled for GPU."""
  g = q.shape[1]
  if interpret or jax.default_backend() != "gpu" or g >= 16 and not g & (g - 1):
    return q
  gp = max(16, 1 << (g - 1).bit_length())
  return jnp.pad(q, ((0, 0), (0, gp - g), (0, 0)))


def _kernel(len_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, *, scale, block_k, split_len):
  start = pl.program_id(1) * split_len
  length = len_ref[()]
  q = q_ref[...].astype(jnp.float32) * scale                  # [G, Dk]
  g, dv = q.shape[0], v_ref.shape[-1]
  idx = lax.broadcasted_iota(jnp.int32, (block_k,), 0)

  def body(i, carry):
    sl = pl.ds(pl.multiple_of(i * block_k, block_k), block_k)
    kb = k_ref[sl, :].astype(jnp.float32)
    vb = v_ref[sl, :].astype(jnp.float32)
    return block_update(q, kb, vb, start + i * block_k + idx < length, carry)

  n_iter = jnp.clip(pl.cdiv(length - start, block_k), 0, split_len // block_k)
  init = (jnp.zeros((g, dv), jnp.float32), jnp.full((g,), NEG, jnp.float32), jnp.zeros((g,), jnp.float32))
  o, m, l = lax.fori_loop(0, n_iter, body, init)
  o_ref[...] = o
  m_ref[...] = m
  l_ref[...] = l


def gqa_decode(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, lengths: jax.Array,
               scale: float | None = None, block_k: int = 64, k_splits: int = 1,
               interpret: bool | None = None) -> jax.Array:
  """Grouped-query softmax attention of one query token per sequence over a KV cache.

  Args:
    q: [B, H, Dk]; k_cache: [B, Hkv, Lmax, Dk]; v_cache: [B, Hkv, Lmax, Dv] (Hkv divides H);
    lengths: int [B], valid cache entries (1 <= length <= Lmax);
    scale: logit scale, default 1 / sqrt(Dk);
    block_k: cache rows per inner step; k_splits: programs per (b, kv head) along the cache (Lmax must
      be a multiple of block_k * k_splits).
    interpret: None -> interpret on CPU, compiled elsewhere.
  Returns:
    [B, H, Dv] in v_cache.dtype.
  """
  ref.check_decode_softmax(q, k_cache, v_cache, lengths)
  b, hkv, lmax, dk = k_cache.shape
  h, dv = q.shape[1], v_cache.shape[-1]
  g = h // hkv
  if block_k <= 0 or k_splits <= 0:
    raise ValueError(f"block_k and k_splits must be positive, got {block_k}, {k_splits}")
  if lmax % (block_k * k_splits):
    raise ValueError(f"cache length {lmax} must be a multiple of block_k * k_splits = {block_k * k_splits}")
  interpret = default_interpret(interpret)
  scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
  n = b * hkv
  split_len = lmax // k_splits
  qg = pad_group(q.reshape(n, g, dk), interpret)
  gp = qg.shape[1]
  kernel = functools.partial(_kernel, scale=scale, block_k=block_k, split_len=split_len)
  cache = lambda d: pl.BlockSpec((None, split_len, d), lambda i, j: (i, j, 0))
  o, m, l = pl.pallas_call(
      kernel,
      grid=(n, k_splits),
      in_specs=[pl.BlockSpec((None,), lambda i, j: (i,)),
                pl.BlockSpec((None, gp, dk), lambda i, j: (i, 0, 0)),
                cache(dk), cache(dv)],
      out_specs=[pl.BlockSpec((None, None, gp, dv), lambda i, j: (i, j, 0, 0)),
                 pl.BlockSpec((None, None, gp), lambda i, j: (i, j, 0)),
                 pl.BlockSpec((None, None, gp), lambda i, j: (i, j, 0))],
      out_shape=[jax.ShapeDtypeStruct((n, k_splits, gp, dv), jnp.float32),
                 jax.ShapeDtypeStruct((n, k_splits, gp), jnp.float32),
                 jax.ShapeDtypeStruct((n, k_splits, gp), jnp.float32)],
      interpret=interpret,
      compiler_params=plgpu.CompilerParams(),  # Triton (jax >= 0.10 defaults to Mosaic GPU)
      name="gqa_decode",
  )(jnp.repeat(lengths.astype(jnp.int32), hkv), qg,
    k_cache.reshape(n, lmax, dk), v_cache.reshape(n, lmax, dv))
  out = merge_partials(o, m, l, axis=1)[:, :g]                 # [n, G, Dv]
  return out.reshape(b, h, dv).astype(v_cache.dtype)
