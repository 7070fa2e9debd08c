"""Plain-jnp references for the attention kernels in `kernels/`.

Shapes: q, k [B, H, L, Dk], v [B, H, L, Dv] (batch, heads, sequence, head dim).
Decay follows TransNormerLLM / Lightning Attention: head h has a rate
s_h >= 0 and a per-token decay factor lambda_h = exp(-s_h), so token s
contributes to query t with weight lambda_h ** |t - s| (causal: s <= t only).
With s_h = 0 this is plain (undecayed) linear attention. No feature map and no
normalisation are applied here: the layers in `mtl/nn/lightning.py` do that.

Functions:
  decay_slopes            the per-head rates s_h.
  softmax_attention       causal / non-causal softmax attention.
  linear_attention_quadratic  naive O(L^2) decayed linear attention.
  linear_attention_recurrent  the recurrent (RNN) form, lax.scan over tokens.
  linear_attention_cumsum     prefix scan over kv outer products (O(L Dk Dv)
                              memory): the "naive cumsum" baseline.
  lightning_attention_chunked block (chunked) lightning attention in jnp.
  lightning_attention_two_pass the same, parallel over blocks: block states,
                              an associative scan over blocks, outputs
                              (the scheme of kernels/lightning_chunked.py).
  linear_decode_step      one recurrent decode step (state update + output).
  softmax_decode_step     one softmax decode step over a KV cache.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

_HI = lax.Precision.HIGHEST


def decay_slopes(num_heads: int, base: float = 8.0) -> jax.Array:
  """Per-head decay rates s_h = 2 ** (-base * (h + 1) / H), h = 0..H-1.

  These are the ALiBi-style slopes used by Lightning Attention / TransNormerLLM
  (head 0 decays fastest). The decay factor per token is exp(-s_h).

  Returns:
    float32 [H].
  """
  if num_heads <= 0:
    raise ValueError(f"num_heads must be positive, got {num_heads}")
  if base < 0:
    raise ValueError(f"decay base must be >= 0, got {base}")
  h = jnp.arange(1, num_heads + 1, dtype=jnp.float32)
  return jnp.exp2(-base * h / num_heads)


def check_qkv(q: jax.Array, k: jax.Array, v: jax.Array,
              slopes: jax.Array | None = None) -> None:
  """Raises ValueError unless q, k [B,H,L,Dk], v [B,H,L,Dv], slopes [H]."""
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(
        f"q, k, v must be [B, H, L, D]; got {q.shape}, {k.shape}, {v.shape}")
  if q.shape != k.shape:
    raise ValueError(f"q and k shapes differ: {q.shape} vs {k.shape}")
  if v.shape[:3] != q.shape[:3]:
    raise ValueError(f"v must be [B, H, L, Dv] with q's B, H, L; got "
                     f"q {q.shape}, v {v.shape}")
  if slopes is not None and slopes.shape != (q.shape[1],):
    raise ValueError(
        f"slopes must be [H]={q.shape[1]}, got shape {slopes.shape}")


def _decay_matrix(slopes: jax.Array, length: int, causal: bool) -> jax.Array:
  """[H, L, L] weights lambda_h ** |t - s| (zero above diagonal if causal)."""
  t = jnp.arange(length)
  diff = (t[:, None] - t[None, :]).astype(jnp.float32)
  w = jnp.exp(-slopes[:, None, None] * jnp.abs(diff)[None])
  if causal:
    w = jnp.where(diff[None] >= 0, w, 0.0)
  return w


def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                      causal: bool = False,
                      scale: float | None = None) -> jax.Array:
  """Softmax attention. q, k [B,H,L,Dk], v [B,H,L,Dv] -> [B,H,L,Dv]."""
  check_qkv(q, k, v)
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  s = jnp.einsum("bhtd,bhsd->bhts", q, k, precision=_HI) * scale
  s = s.astype(jnp.float32)
  if causal:
    length = q.shape[2]
    mask = jnp.tril(jnp.ones((length, length), bool))
    s = jnp.where(mask, s, -jnp.inf)
  p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
  return jnp.einsum("bhts,bhsd->bhtd", p, v, precision=_HI)


def linear_attention_quadratic(q: jax.Array, k: jax.Array, v: jax.Array,
                               slopes: jax.Array,
                               causal: bool = True) -> jax.Array:
  """Naive O(L^2) decayed linear attention.

  o_t = sum_s lambda_h ** |t - s| (q_t . k_s) v_s, over s <= t if causal.

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv]; slopes: [H] decay rates s_h.
  Returns:
    [B, H, L, Dv].
  """
  check_qkv(q, k, v, slopes)
  w = _decay_matrix(slopes.astype(jnp.float32), q.shape[2], causal)
  s = jnp.einsum("bhtd,bhsd->bhts", q, k, precision=_HI) * w[None]
  return jnp.einsum("bhts,bhsd->bhtd", s.astype(v.dtype), v, precision=_HI)


def linear_attention_recurrent(q: jax.Array, k: jax.Array, v: jax.Array,
                               slopes: jax.Array,
                               state: jax.Array | None = None
                               ) -> tuple[jax.Array, jax.Array]:
  """Causal decayed linear attention in recurrent form (lax.scan over L).

  S_t = lambda * S_{t-1} + k_t^T v_t,  o_t = q_t S_t.

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv]; slopes: [H];
    state: optional initial state [B, H, Dk, Dv] (zeros if None).
  Returns:
    (o [B, H, L, Dv], final state [B, H, Dk, Dv] float32).
  """
  check_qkv(q, k, v, slopes)
  b, h, _, dk = q.shape
  dv = v.shape[-1]
  if state is None:
    state = jnp.zeros((b, h, dk, dv), jnp.float32)
  lam = jnp.exp(-slopes.astype(jnp.float32))[None, :, None, None]

  def step(s, qkv):
    qt, kt, vt = qkv
    s = lam * s + jnp.einsum("bhd,bhe->bhde", kt, vt, precision=_HI)
    return s, jnp.einsum("bhd,bhde->bhe", qt, s, precision=_HI)

  xs = tuple(jnp.moveaxis(a.astype(jnp.float32), 2, 0) for a in (q, k, v))
  state, o = lax.scan(step, state, xs)
  return jnp.moveaxis(o, 0, 2).astype(v.dtype), state


def linear_attention_cumsum(q: jax.Array, k: jax.Array, v: jax.Array,
                            slopes: jax.Array) -> jax.Array:
  """Causal decayed linear attention as a prefix scan of kv outer products.

  Materialises all L states [B, H, L, Dk, Dv] (the "naive cumsum" form,
  O(L Dk Dv) memory); the decay makes it an associative scan of
  (a, S) pairs with (a1, S1) * (a2, S2) = (a1 a2, a2 S1 + S2).

  Returns:
    [B, H, L, Dv].
  """
  check_qkv(q, k, v, slopes)
  kv = jnp.einsum("bhld,bhle->bhlde", k, v, precision=_HI)
  a = jnp.broadcast_to(jnp.exp(-slopes.astype(kv.dtype))[None, :, None],
                       q.shape[:3])[..., None, None]

  def combine(x, y):
    (a1, s1), (a2, s2) = x, y
    return a1 * a2, a2 * s1 + s2

  _, states = lax.associative_scan(combine, (a, kv), axis=2)
  return jnp.einsum("bhld,bhlde->bhle", q, states, precision=_HI)


def _causal_chunked(q, k, v, slopes, block_size):
  """Causal lightning attention on inputs already padded to the block."""
  b, h, length, dk = q.shape
  dv = v.shape[-1]
  c = block_size
  n = length // c
  s = slopes.astype(jnp.float32)
  idx = jnp.arange(c, dtype=jnp.float32)
  diff = idx[:, None] - idx[None, :]
  # [H, C, C] intra-block mask lambda^(i-j) for i >= j.
  m = jnp.where(diff[None] >= 0, jnp.exp(-s[:, None, None] * jnp.maximum(
      diff, 0.0)[None]), 0.0)
  q_decay = jnp.exp(-s[:, None] * (idx[None] + 1.0))[..., None]  # [H, C, 1]
  k_decay = jnp.exp(-s[:, None] * (c - 1.0 - idx[None]))[..., None]
  blk_decay = jnp.exp(-s * c)[:, None, None]  # [H, 1, 1]

  qb, kb, vb = (jnp.moveaxis(x.reshape(b, h, n, c, x.shape[-1]), 2, 0)
                for x in (q, k, v))

  def step(state, blk):
    qi, ki, vi = blk  # [B, H, C, D]
    scores = jnp.einsum("bhid,bhjd->bhij", qi, ki, precision=_HI) * m
    o = jnp.einsum("bhij,bhje->bhie", scores, vi, precision=_HI)
    o += jnp.einsum("bhid,bhde->bhie", qi * q_decay, state, precision=_HI)
    state = blk_decay * state + jnp.einsum(
        "bhjd,bhje->bhde", ki * k_decay, vi, precision=_HI)
    return state, o

  state0 = jnp.zeros((b, h, dk, dv), jnp.float32)
  # Rematerialise each block in the backward pass: keeps only the [Dk, Dv] states and the inputs as
  # residuals instead of per-block scores, which is less memory traffic and faster on CPU at long L.
  step = jax.checkpoint(step, prevent_cse=False)
  _, o = lax.scan(step, state0, (qb.astype(jnp.float32),
                                 kb.astype(jnp.float32),
                                 vb.astype(jnp.float32)))
  return jnp.moveaxis(o, 0, 2).reshape(b, h, length, dv)


def pad_to_block(x: jax.Array, block_size: int, axis: int = 2) -> jax.Array:
  """Zero-pads `axis` of x up to a multiple of block_size."""
  pad = -x.shape[axis] % block_size
  if pad == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def bidirectional_from_causal(causal_fn, q, k, v):
  """Non-causal decayed attention from two causal passes.

  o = causal(q,k,v) + flip(causal(flip q, flip k, flip v)) - (q_t.k_t) v_t,
  since lambda ** |t - s| splits into s <= t and s >= t parts sharing s = t.
  """
  fwd = causal_fn(q, k, v)
  bwd = jnp.flip(causal_fn(*(jnp.flip(x, axis=2) for x in (q, k, v))),
                 axis=2)
  diag = jnp.sum(q.astype(jnp.float32) * k.astype(jnp.float32), -1,
                 keepdims=True) * v.astype(jnp.float32)
  return (fwd.astype(jnp.float32) + bwd.astype(jnp.float32) - diag)


def lightning_attention_chunked(q: jax.Array, k: jax.Array, v: jax.Array,
                                slopes: jax.Array, causal: bool = True,
                                block_size: int = 64) -> jax.Array:
  """Block (chunked) lightning attention in plain jnp.

  Intra-block: masked, decayed quadratic product within each block of C
  tokens. Inter-block: a kv state [Dk, Dv] carried across blocks by lax.scan
  (no cumsum over the sequence), so cost is O(L (C (Dk + Dv) + Dk Dv)) and
  memory O(L D + Dk Dv). Any L works (inputs are zero-padded to the block).

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv]; slopes: [H] decay rates;
    causal: if False uses symmetric decay lambda ** |t - s|;
    block_size: C, tokens per block.
  Returns:
    [B, H, L, Dv] in v.dtype (computed in float32).
  """
  return _blocked(_causal_chunked, q, k, v, slopes, causal, block_size)


def _blocked(causal_blocks, q, k, v, slopes, causal: bool, block_size: int) -> jax.Array:
  """Checks the inputs, pads L to the block, runs `causal_blocks(q, k, v, slopes, block_size)` (a causal
  blocked implementation on padded inputs; bidirectional from two causal passes) and casts to v.dtype."""
  check_qkv(q, k, v, slopes)
  if block_size <= 0:
    raise ValueError(f"block_size must be positive, got {block_size}")
  length = q.shape[2]

  def causal_fn(q, k, v):
    qp, kp, vp = (pad_to_block(x, block_size) for x in (q, k, v))
    return causal_blocks(qp, kp, vp, slopes, block_size)[:, :, :length]

  o = causal_fn(q, k, v) if causal else bidirectional_from_causal(causal_fn, q, k, v)
  return o.astype(v.dtype)


def _causal_two_pass(q, k, v, slopes, block_size):
  """Causal lightning attention, parallel over blocks, on inputs padded to the block."""
  b, h, length, _ = q.shape
  c = block_size
  n = length // c
  s = slopes.astype(jnp.float32)
  idx = jnp.arange(c, dtype=jnp.float32)
  diff = idx[:, None] - idx[None, :]
  m = jnp.where(diff[None] >= 0, jnp.exp(-s[:, None, None] * jnp.maximum(diff, 0.0)[None]), 0.0)
  q_decay = jnp.exp(-s[:, None] * (idx[None] + 1.0))[:, None, :, None]      # [H, 1, C, 1]
  k_decay = jnp.exp(-s[:, None] * (c - 1.0 - idx[None]))[:, None, :, None]
  qb, kb, vb = (x.astype(jnp.float32).reshape(b, h, n, c, x.shape[-1]) for x in (q, k, v))
  # 1. per-block states K_n = (lambda^(C-1-j) k)^T v, all blocks at once.
  kv = jnp.einsum("bhncd,bhnce->bhnde", kb * k_decay, vb, precision=_HI)
  # 2. state entering block n: S_n = sum_{m<n} lambda^(C(n-1-m)) K_m (exclusive associative scan).
  a = jnp.broadcast_to(jnp.exp(-s * c)[None, :, None, None, None], (b, h, n, 1, 1))
  _, incl = lax.associative_scan(lambda x, y: (x[0] * y[0], y[0] * x[1] + y[1]), (a, kv), axis=2)
  states = jnp.concatenate([jnp.zeros_like(incl[:, :, :1]), incl[:, :, :-1]], axis=2)
  # 3. outputs, all blocks at once.
  scores = jnp.einsum("bhncd,bhnjd->bhncj", qb, kb, precision=_HI) * m[:, None]
  o = jnp.einsum("bhncj,bhnje->bhnce", scores, vb, precision=_HI)
  o += jnp.einsum("bhncd,bhnde->bhnce", qb * q_decay, states, precision=_HI)
  return o.reshape(b, h, length, v.shape[-1])


def lightning_attention_two_pass(q: jax.Array, k: jax.Array, v: jax.Array, slopes: jax.Array,
                                 causal: bool = True, block_size: int = 64) -> jax.Array:
  """Block lightning attention in jnp, parallel over blocks (no sequential loop).

  Same result as `lightning_attention_chunked`; instead of a scan carrying the
  state it computes every block's kv state, combines them with an associative
  scan over the L/C blocks (log depth) and forms all outputs at once. Memory
  O(L D + (L/C) Dk Dv). Any L (zero-padded to the block).

  Args / returns: as `lightning_attention_chunked` ([B, H, L, Dv] in v.dtype).
  """
  return _blocked(_causal_two_pass, q, k, v, slopes, causal, block_size)


def linear_decode_step(q: jax.Array, k: jax.Array, v: jax.Array,
                       state: jax.Array, slopes: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
  """One causal linear-attention decode step.

  Args:
    q, k: [B, H, Dk]; v: [B, H, Dv]; state: [B, H, Dk, Dv]; slopes: [H].
  Returns:
    (o [B, H, Dv], new state [B, H, Dk, Dv]) with
    S' = lambda S + k^T v and o = q S'.
  """
  check_decode_linear(q, k, v, state, slopes)
  lam = jnp.exp(-slopes.astype(jnp.float32))[None, :, None, None]
  new = lam * state.astype(jnp.float32) + (
      k.astype(jnp.float32)[..., :, None] * v.astype(jnp.float32)[..., None, :])
  o = jnp.einsum("bhd,bhde->bhe", q.astype(jnp.float32), new, precision=_HI)
  return o.astype(v.dtype), new.astype(state.dtype)


def check_decode_linear(q, k, v, state, slopes) -> None:
  """Raises ValueError on bad linear-decode shapes."""
  if q.ndim != 3 or q.shape != k.shape or v.shape[:2] != q.shape[:2]:
    raise ValueError(f"q, k must be [B, H, Dk] and v [B, H, Dv]; got "
                     f"{q.shape}, {k.shape}, {v.shape}")
  want = (*q.shape, v.shape[-1])
  if state.shape != want:
    raise ValueError(f"state must be [B, H, Dk, Dv]={want}, got {state.shape}")
  if slopes.shape != (q.shape[1],):
    raise ValueError(f"slopes must be [H]={q.shape[1]}, got {slopes.shape}")


def check_decode_softmax(q, k_cache, v_cache, lengths) -> None:
  """Raises ValueError on bad softmax-decode shapes (q heads a multiple of the cache's KV heads)."""
  if q.ndim != 3 or k_cache.ndim != 4 or v_cache.ndim != 4:
    raise ValueError(f"q must be [B, H, D], caches [B, Hkv, Lmax, D]; got "
                     f"{q.shape}, {k_cache.shape}, {v_cache.shape}")
  if (k_cache.shape[0] != q.shape[0] or q.shape[1] % k_cache.shape[1]
      or k_cache.shape[-1] != q.shape[-1]):
    raise ValueError(f"k_cache {k_cache.shape} does not match q {q.shape} "
                     f"(needs the same B and Dk, and H a multiple of Hkv)")
  if v_cache.shape[:3] != k_cache.shape[:3]:
    raise ValueError(f"v_cache {v_cache.shape} does not match k_cache "
                     f"{k_cache.shape}")
  if lengths.shape != (q.shape[0],):
    raise ValueError(f"lengths must be [B]={q.shape[0]}, got {lengths.shape}")


def softmax_decode_step(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array,
                        lengths: jax.Array,
                        scale: float | None = None) -> jax.Array:
  """Softmax attention of one query token over a KV cache.

  Args:
    q: [B, H, Dk]; k_cache: [B, Hkv, Lmax, Dk]; v_cache: [B, Hkv, Lmax, Dv]
      (H a multiple of Hkv: query head h reads KV head h // (H / Hkv); Hkv = H
      is multi-head attention);
    lengths: int [B], number of valid cache entries (positions >= length
      are ignored; length must be >= 1).
  Returns:
    [B, H, Dv].
  """
  check_decode_softmax(q, k_cache, v_cache, lengths)
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  b, h, dk = q.shape
  hkv = k_cache.shape[1]
  qg = q.reshape(b, hkv, h // hkv, dk)
  s = jnp.einsum("bhgd,bhld->bhgl", qg, k_cache, precision=_HI).astype(
      jnp.float32) * scale
  valid = jnp.arange(k_cache.shape[2])[None, None, None] < lengths[:, None, None, None]
  s = jnp.where(valid, s, -jnp.inf)
  p = jax.nn.softmax(s, axis=-1)
  o = jnp.einsum("bhgl,bhld->bhgd", p.astype(v_cache.dtype), v_cache,
                 precision=_HI)
  return o.reshape(b, h, v_cache.shape[-1])
