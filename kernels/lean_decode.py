"""Lean Attention decode step (Sanovar et al. 2024) in Pallas: the KV cache split evenly over programs.

Public functions:
  lean_decode(q, k_cache, v_cache, lengths, scale, block_k, num_programs, interpret)
      same semantics as `kernels.reference.softmax_decode_step` (q [B, H, Dk], caches [B, Hkv, Lmax, D],
      H a multiple of Hkv, lengths int [B] >= 1) -> [B, H, Dv].
  lean_schedule(lengths, num_kv_heads, block_k, num_programs)
      the work split (below), exposed for tests and benchmarks.

Fixed split-k (`kernels.softmax_decode`, `kernels.gqa_decode`) gives every (b, kv head) the same
k_splits programs, so work per program follows the lengths: short rows leave programs idle, and when
B * Hkv * k_splits is not a multiple of the number of cores the last wave runs part-empty. Lean Attention
instead treats the decode step as one flat list of work units, the "lean tiles": row r = b * Hkv + h has
n_r = cdiv(length_b, block_k) tiles of `block_k` cache rows, T = sum_r n_r in all, laid end to end in row
order. Program p of P takes the contiguous range [start_p, start_{p+1}) with start_p = p * (T // P) +
min(p, T % P), so every program gets T // P or T // P + 1 tiles whatever (B, Hkv, lengths) are. A range
may begin or end inside a row and may cover several rows: the program runs an online softmax over its
tiles and writes one partial result (o unnormalised [G, Dv], running max m [G], sum l [G]) each time it
leaves a row ("segment"). The schedule is computed from the runtime lengths in jnp (O(B * Hkv + P)),
not compiled in, so one kernel serves all lengths. The partials of each row (from one or several
programs) are combined exactly, by the log-sum-exp rule sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i with
M = max_i m_i, by a second Pallas call over rows (`lean_merge_rows`; or jnp segment reductions with
merge='segment'), where the paper has a "host" block reduce them inside the kernel.

A program serves the whole query group of its KV head (G = H / Hkv queries per tile, one [G, Dk] x
[Dk, block_k] dot). Its segment buffer has S = min(B * Hkv, ceil(T_max / P) + 1) slots, T_max the
tiles of a full cache (a range of at most ceil(T / P) tiles touches at most that many + 1 rows).
Lmax must be a multiple of block_k (mtl.decode rounds the cache up); lengths need not be.
Tested in interpret mode (tests/kernels/test_lean_decode.py); compiled for GPU through Triton (whole-array
refs, group padded to 16 rows, power-of-two segment buffer) and timed on an H200 by
experiments/bench_lean_decode.py (docs/gqa.md: the kernel alone beats the best fixed split 1.5x on a
ragged batch, but the schedule and merge cost more than that, so the whole call is 0.57-0.80x of the best
fixed split).
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
from kernels.gqa_decode import NEG, block_update, pad_group
from kernels.lightning_attention import default_interpret

DEFAULT_PROGRAMS_CPU = 8


def default_programs() -> int:
  """Number of programs: the GPU's streaming multiprocessors when known, else DEFAULT_PROGRAMS_CPU."""
  dev = jax.devices()[0]
  return int(getattr(dev, "core_count", 0) or 0) or DEFAULT_PROGRAMS_CPU


def _whole(a: jax.Array) -> pl.BlockSpec:
  """The whole array as one block, the same for every program of a 1-D grid."""
  return pl.BlockSpec(a.shape, lambda i: (0,) * a.ndim)


def lean_schedule(lengths: jax.Array, num_kv_heads: int, block_k: int, num_programs: int,
                  max_tiles: int | None = None) -> dict[str, jax.Array]:
  """The Lean work split for per-sequence `lengths` int [B].

  Returns int32 arrays: offsets [R + 1] (first tile of each row r = b * Hkv + h; offsets[R] = T),
  starts [P + 1] (first tile of each program; starts[P] = T), first_row [P] (row of a program's first
  tile; R - 1 for an empty program past the end), row_len [R] (valid cache rows of row r); with
  `max_tiles` (a static bound on T) also tile_row, tile_j [max_tiles]: the row of tile t and its index
  within that row (entries past T are unused).
  """
  if num_kv_heads <= 0 or block_k <= 0 or num_programs <= 0:
    raise ValueError(f"num_kv_heads, block_k and num_programs must be positive, got {num_kv_heads}, "
                     f"{block_k}, {num_programs}")
  row_len = jnp.repeat(lengths.astype(jnp.int32), num_kv_heads)            # [R]
  tiles = jnp.maximum((row_len + block_k - 1) // block_k, 1)              # a length-0 row still gets a tile
  offsets = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(tiles).astype(jnp.int32)])
  total = offsets[-1]
  p = jnp.arange(num_programs + 1, dtype=jnp.int32)
  per, extra = total // num_programs, total % num_programs
  starts = p * per + jnp.minimum(p, extra)
  first_row = jnp.sum(offsets[None, 1:] <= starts[:-1, None], axis=1).astype(jnp.int32)
  first_row = jnp.minimum(first_row, row_len.shape[0] - 1)
  out = {"offsets": offsets, "starts": starts, "first_row": first_row, "row_len": row_len}
  if max_tiles is not None:
    t = jnp.arange(max_tiles, dtype=jnp.int32)
    tile_row = jnp.minimum(jnp.searchsorted(offsets[1:], t, side="right"), row_len.shape[0] - 1)
    out["tile_row"] = tile_row.astype(jnp.int32)
    out["tile_j"] = (t - offsets[tile_row]).astype(jnp.int32)
  return out


def _kernel(starts_ref, first_row_ref, offsets_ref, row_len_ref, tile_row_ref, tile_j_ref, q_ref, k_ref,
            v_ref, o_ref, m_ref, l_ref, *, scale, block_k, num_rows, index):
  p = pl.program_id(0)
  g0, g1 = starts_ref[p], starts_ref[p + 1]
  gp, dv = q_ref.shape[1], v_ref.shape[-1]
  # Only m marks the unused slots (NEG); their o and l are masked out in the merge, so the [S, G, Dv] block
  # is never zero-filled (with P in the hundreds that fill would be most of the kernel's writes).
  m_ref[...] = jnp.full(m_ref.shape, NEG, jnp.float32)
  l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
  idx = lax.broadcasted_iota(jnp.int32, (block_k,), 0)
  empty = (jnp.zeros((gp, dv), jnp.float32), jnp.full((gp,), NEG, jnp.float32), jnp.zeros((gp,), jnp.float32))

  def flush(seg, carry):
    o, m, l = carry
    o_ref[pl.ds(seg, 1)] = o[None]
    m_ref[pl.ds(seg, 1)] = m[None]
    l_ref[pl.ds(seg, 1)] = l[None]

  def body(t, c):
    row, seg, o, m, l = c
    if index == "tile":     # the tile's row and position come from the loop index alone, so the cache loads
      new_row, j = tile_row_ref[t], tile_j_ref[t]              # do not wait on the carried row
      leave = new_row != row
    else:                   # walk the row offsets: one scalar read per tile that depends on the carry
      leave = t >= offsets_ref[jnp.minimum(row + 1, num_rows)]  # this tile starts the next row
    pl.when(leave)(lambda: flush(seg, (o, m, l)))
    o, m, l = (jnp.where(leave, e, a) for e, a in zip(empty, (o, m, l)))
    seg = seg + leave.astype(jnp.int32)
    if index == "tile":
      row = new_row
    else:
      row = row + leave.astype(jnp.int32)
      j = t - offsets_ref[row]                                 # tile index within the row
    q = q_ref[row].astype(jnp.float32) * scale                 # [G, Dk]
    rows = pl.ds(pl.multiple_of(j * block_k, block_k), block_k)
    kb = k_ref[row, rows, :].astype(jnp.float32)
    vb = v_ref[row, rows, :].astype(jnp.float32)
    o, m, l = block_update(q, kb, vb, j * block_k + idx < row_len_ref[row], (o, m, l))
    return row, seg, o, m, l

  row, seg, o, m, l = lax.fori_loop(g0, g1, body, (first_row_ref[p], jnp.int32(0)) + empty)
  pl.when(g1 > g0)(lambda: flush(seg, (o, m, l)))


def lean_partials(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, sched: dict[str, jax.Array],
                  scale: float, block_k: int, num_programs: int, interpret: bool, index: str = "offsets"
                  ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The Pallas part of `lean_decode`: q [B, H, Dk], caches [B, Hkv, Lmax, D], `sched` from `lean_schedule`
  (with tile_row / tile_j when index='tile') -> per-program segments o [P * S, Gp, Dv] (unnormalised), m, l
  [P * S, Gp] (m = NEG in unused slots) and seg_row [P * S] (the row each slot belongs to); Gp >= H / Hkv is
  the padded query group."""
  b, hkv, lmax, dk = k_cache.shape
  h, dv = q.shape[1], v_cache.shape[-1]
  rows = b * hkv
  t_max = rows * (lmax // block_k)
  slots = min(rows, -(-t_max // num_programs) + 1)
  slots = 1 << (slots - 1).bit_length()        # a power of two: Triton's block shapes must be
  qg = pad_group(q.reshape(rows, h // hkv, dk), interpret)
  gp = qg.shape[1]
  kernel = functools.partial(_kernel, scale=scale, block_k=block_k, num_rows=rows, index=index)
  unused = jnp.zeros((1,), jnp.int32)
  args = (sched["starts"], sched["first_row"], sched["offsets"], sched["row_len"],
          sched.get("tile_row", unused), sched.get("tile_j", unused), qg,
          k_cache.reshape(rows, lmax, dk), v_cache.reshape(rows, lmax, dv))
  o, m, l = pl.pallas_call(
      kernel,
      grid=(num_programs,),
      in_specs=[_whole(a) for a in args],
      out_specs=[pl.BlockSpec((None, slots, gp, dv), lambda i: (i, 0, 0, 0)),
                 pl.BlockSpec((None, slots, gp), lambda i: (i, 0, 0)),
                 pl.BlockSpec((None, slots, gp), lambda i: (i, 0, 0))],
      out_shape=[jax.ShapeDtypeStruct((num_programs, slots, gp, dv), jnp.float32),
                 jax.ShapeDtypeStruct((num_programs, slots, gp), jnp.float32),
                 jax.ShapeDtypeStruct((num_programs, slots, gp), jnp.float32)],
      interpret=interpret,
      compiler_params=plgpu.CompilerParams(),  # Triton (jax >= 0.10 defaults to Mosaic GPU)
      name="lean_decode",
  )(*args)
  # Segment s of program p holds row first_row[p] + s; unused slots (m = NEG) are masked in the merge.
  seg_row = jnp.minimum(sched["first_row"][:, None] + jnp.arange(slots)[None], rows - 1).reshape(-1)
  return o.reshape(-1, gp, dv), m.reshape(-1, gp), l.reshape(-1, gp), seg_row


def lean_merge(o: jax.Array, m: jax.Array, l: jax.Array, seg_row: jax.Array, num_rows: int) -> jax.Array:
  """Exact log-sum-exp merge of the segments of `lean_partials` into their rows -> [R, Gp, Dv]."""
  m_row = jax.ops.segment_max(m, seg_row, num_segments=num_rows)         # [R, Gp]
  used = m > NEG                                                         # flushed slots (o, l written)
  w = jnp.where(used, jnp.exp(m - m_row[seg_row]), 0.0)
  num = jax.ops.segment_sum(jnp.where(used[..., None], o * w[..., None], 0.0), seg_row, num_segments=num_rows)
  den = jax.ops.segment_sum(jnp.where(used, l * w, 0.0), seg_row, num_segments=num_rows)
  return num / den[..., None]


def _merge_kernel(first_row_ref, offsets_ref, o_ref, m_ref, l_ref, out_ref, *, num_programs, num_rows):
  r = pl.program_id(0)
  total = offsets_ref[num_rows]
  per, extra = total // num_programs, total % num_programs
  boundary = extra * (per + 1)

  def program_of(t):  # the program holding tile t under the equal split of lean_schedule
    return jnp.where(t < boundary, t // (per + 1), extra + (t - boundary) // jnp.maximum(per, 1))

  gp, dv = o_ref.shape[2], o_ref.shape[3]

  def body(p, c):
    acc, m_run, l_run = c
    s = r - first_row_ref[p]                  # program p's segments are its rows in order from first_row[p]
    m, l, o = m_ref[p, s], l_ref[p, s], o_ref[p, s]
    m_new = jnp.maximum(m_run, m)
    a, b = jnp.exp(m_run - m_new), jnp.exp(m - m_new)
    return acc * a[:, None] + o * b[:, None], m_new, l_run * a + l * b

  init = (jnp.zeros((gp, dv), jnp.float32), jnp.full((gp,), NEG, jnp.float32), jnp.zeros((gp,), jnp.float32))
  acc, _, l = lax.fori_loop(program_of(offsets_ref[r]), program_of(offsets_ref[r + 1] - 1) + 1, body, init)
  out_ref[...] = acc / l[:, None]


def lean_merge_rows(o: jax.Array, m: jax.Array, l: jax.Array, sched: dict[str, jax.Array], num_programs: int,
                    interpret: bool) -> jax.Array:
  """The merge of `lean_merge` as one Pallas call over rows: row r reads the segments of exactly the programs
  whose tiles touch it (a contiguous range, from the split's closed form), with no scatter. o [P * S, Gp, Dv],
  m, l [P * S, Gp] from `lean_partials` -> [R, Gp, Dv]."""
  rows = sched["row_len"].shape[0]
  gp, dv = o.shape[1], o.shape[2]
  o4, m3, l3 = (a.reshape(num_programs, -1, *a.shape[1:]) for a in (o, m, l))
  args = (sched["first_row"], sched["offsets"], o4, m3, l3)
  return pl.pallas_call(
      functools.partial(_merge_kernel, num_programs=num_programs, num_rows=rows),
      grid=(rows,),
      in_specs=[_whole(a) for a in args],
      out_specs=pl.BlockSpec((None, gp, dv), lambda i: (i, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((rows, gp, dv), jnp.float32),
      interpret=interpret,
      compiler_params=plgpu.CompilerParams(),  # Triton (jax >= 0.10 defaults to Mosaic GPU)
      name="lean_merge",
  )(*args)


def lean_decode(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, lengths: jax.Array,
                scale: float | None = None, block_k: int = 64, num_programs: int | None = None,
                interpret: bool | None = None, index: str = "offsets", merge: str = "pallas") -> jax.Array:
  """Softmax (MHA / GQA / MQA) attention of one query token per sequence over a KV cache, Lean split.

  Args:
    q: [B, H, Dk]; k_cache: [B, Hkv, Lmax, Dk]; v_cache: [B, Hkv, Lmax, Dv] (Hkv divides H);
    lengths: int [B], valid cache entries (1 <= length <= Lmax);
    scale: logit scale, default 1 / sqrt(Dk); block_k: cache rows per tile (divides Lmax);
    num_programs: P (default `default_programs()`), any positive number: programs beyond the work idle.
    interpret: None -> interpret on CPU, compiled elsewhere.
    index: how a program finds each tile's row: 'offsets' (walk the row offsets, a scalar read that depends
      on the previous tile) or 'tile' (a per-tile row / position table from the schedule, O(Lmax * B * Hkv /
      block_k) int32, read by the loop index alone).
    merge: 'pallas' (`lean_merge_rows`: one Pallas call over rows) or 'segment' (`lean_merge`: jnp segment
      reductions, i.e. scatters).
  Returns:
    [B, H, Dv] in v_cache.dtype.
  """
  ref.check_decode_softmax(q, k_cache, v_cache, lengths)
  b, hkv, lmax, dk = k_cache.shape
  h, dv = q.shape[1], v_cache.shape[-1]
  num_programs = default_programs() if num_programs is None else int(num_programs)
  if block_k <= 0 or num_programs <= 0:
    raise ValueError(f"block_k and num_programs must be positive, got {block_k}, {num_programs}")
  if lmax % block_k:
    raise ValueError(f"cache length {lmax} must be a multiple of block_k = {block_k}")
  if index not in ("offsets", "tile"):
    raise ValueError(f"index must be 'offsets' or 'tile', got {index!r}")
  if merge not in ("pallas", "segment"):
    raise ValueError(f"merge must be 'pallas' or 'segment', got {merge!r}")
  interpret = default_interpret(interpret)
  scale = 1.0 / math.sqrt(dk) if scale is None else float(scale)
  rows = b * hkv
  sched = lean_schedule(lengths, hkv, block_k, num_programs,
                        max_tiles=rows * (lmax // block_k) if index == "tile" else None)
  o, m, l, seg_row = lean_partials(q, k_cache, v_cache, sched, scale, block_k, num_programs, interpret, index)
  out = (lean_merge_rows(o, m, l, sched, num_programs, interpret) if merge == "pallas"
         else lean_merge(o, m, l, seg_row, rows))[:, :h // hkv]
  return out.reshape(b, h, dv).astype(v_cache.dtype)
