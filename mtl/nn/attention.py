"""Multi-head softmax attention with a KV cache for decoding.

`SoftmaxAttention(num_heads, head_dim, causal)` maps x [B, L, D] -> [B, L, D_out]
(D_out = out_dim or num_heads * head_dim) with `jax.nn.dot_product_attention`.
Decoding: `init_kv_cache(batch, max_len, num_heads, head_dim)` builds a cache
{'k', 'v': [B, H, Lmax, Dh], 'length': int32 [B]}; `SoftmaxAttention.prefill`
writes a prompt into it and `SoftmaxAttention.decode_step` consumes one token
per sequence (x [B, D]) using `kernels.softmax_decode` ('pallas') or the jnp
reference ('jnp').

Positions: with `rope=True`, q and k are rotated by their absolute positions
(RoPE, Su et al. 2021: pairs (x_i, x_{i+Dh/2}) rotated by pos * base^(-2i/Dh)),
so q.k depends only on the relative offset. The cache stores rotated keys; the
forward uses positions 0..L-1, prefill the same, decode the cache length.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import reference as kref
from kernels.softmax_decode import softmax_decode

KVCache = dict[str, jax.Array]

ATTN_IMPLS = (None, "xla", "cudnn")
DECODE_IMPLS = ("jnp", "pallas")


def rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding of x [..., H, Dh] at integer positions [...] (x.shape[:-2]); Dh even."""
  dh = x.shape[-1]
  if dh % 2:
    raise ValueError(f"rope needs an even head_dim, got {dh}")
  freq = base ** (-jnp.arange(dh // 2, dtype=jnp.float32) * 2.0 / dh)            # [Dh/2]
  angle = positions.astype(jnp.float32)[..., None, None] * freq                   # [..., 1, Dh/2]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).astype(x.dtype)


def init_kv_cache(batch: int, max_len: int, num_heads: int, head_dim: int,
                  dtype: Any = jnp.float32) -> KVCache:
  """Empty KV cache: k, v [B, H, max_len, head_dim] zeros, length int32 [B]."""
  for name, val in (("batch", batch), ("max_len", max_len),
                    ("num_heads", num_heads), ("head_dim", head_dim)):
    if val <= 0:
      raise ValueError(f"init_kv_cache: {name} must be positive, got {val}")
  shape = (batch, num_heads, max_len, head_dim)
  return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype),
          "length": jnp.zeros((batch,), jnp.int32)}


def _check_cache(cache: KVCache, batch: int, heads: int, head_dim: int):
  if set(cache) != {"k", "v", "length"}:
    raise ValueError(f"KV cache must have keys k, v, length; got {sorted(cache)}")
  k = cache["k"]
  if k.ndim != 4 or k.shape[0] != batch or k.shape[1] != heads or (
      k.shape[3] != head_dim):
    raise ValueError(f"KV cache k must be [B={batch}, H={heads}, Lmax, "
                     f"Dh={head_dim}], got {k.shape}")


class SoftmaxAttention(nn.Module):
  """Multi-head softmax (self-)attention.

  Attributes:
    num_heads: H. head_dim: Dh. causal: causal mask.
    out_dim: output width (default H * Dh).
    implementation: passed to jax.nn.dot_product_attention (None, 'xla',
      'cudnn').
    decode_impl: 'jnp' (reference) or 'pallas' (kernels.softmax_decode).
    decode_block_k: cache rows per step of the Pallas decode kernel.
    dtype: computation dtype of the projections.
    rope: rotary position embedding of q and k (needs an even head_dim).
    rope_base: RoPE frequency base.
  """
  num_heads: int
  head_dim: int
  causal: bool = False
  out_dim: int | None = None
  implementation: str | None = None
  decode_impl: str = "jnp"
  decode_block_k: int = 16
  dtype: Any = jnp.float32
  rope: bool = False
  rope_base: float = 10000.0

  def setup(self):
    if self.num_heads <= 0 or self.head_dim <= 0:
      raise ValueError(f"num_heads and head_dim must be positive, got "
                       f"{self.num_heads}, {self.head_dim}")
    if self.implementation not in ATTN_IMPLS:
      raise ValueError(f"unknown implementation {self.implementation!r}; "
                       f"expected one of {ATTN_IMPLS}")
    if self.decode_impl not in DECODE_IMPLS:
      raise ValueError(f"unknown decode_impl {self.decode_impl!r}; expected "
                       f"one of {DECODE_IMPLS}")
    if self.rope and self.head_dim % 2:
      raise ValueError(f"rope needs an even head_dim, got {self.head_dim}")
    self.qkv = nn.DenseGeneral((3, self.num_heads, self.head_dim),
                               dtype=self.dtype, name="qkv")
    self.out = nn.DenseGeneral(self.out_dim or self.num_heads * self.head_dim,
                               axis=(-2, -1), dtype=self.dtype, name="out")

  def _qkv(self, x, positions=None):
    """q, k, v [..., H, Dh] of x [..., D]; with `rope`, q and k rotated at positions [...] (x.shape[:-1])."""
    qkv = self.qkv(x)  # [..., 3, H, Dh]
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    if self.rope:
      if positions is None:
        raise ValueError("SoftmaxAttention with rope needs token positions")
      q, k = rope(q, positions, self.rope_base), rope(k, positions, self.rope_base)
    return q, k, v

  def _positions(self, x):
    b, length = x.shape[:2]
    return jnp.broadcast_to(jnp.arange(length)[None], (b, length))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, D] -> [B, L, D_out]."""
    if x.ndim != 3:
      raise ValueError(f"SoftmaxAttention expects x [B, L, D], got {x.shape}")
    q, k, v = self._qkv(x, self._positions(x))  # [B, L, H, Dh]
    o = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal,
                                     implementation=self.implementation)
    return self.out(o)

  def prefill(self, x: jax.Array, cache: KVCache
              ) -> tuple[jax.Array, KVCache]:
    """Causal attention over a prompt x [B, L, D] written at cache[:, :, :L].

    The cache must be empty (length 0). Returns (y [B, L, D_out], cache with
    length L).
    """
    if not self.causal:
      raise ValueError("prefill/decode need a causal SoftmaxAttention")
    b, length = x.shape[:2]
    _check_cache(cache, b, self.num_heads, self.head_dim)
    if length > cache["k"].shape[2]:
      raise ValueError(f"prompt length {length} exceeds cache length "
                       f"{cache['k'].shape[2]}")
    q, k, v = self._qkv(x, self._positions(x))
    o = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                     implementation=self.implementation)
    kt, vt = (jnp.swapaxes(a, 1, 2).astype(cache["k"].dtype) for a in (k, v))
    new = {"k": cache["k"].at[:, :, :length].set(kt),
           "v": cache["v"].at[:, :, :length].set(vt),
           "length": jnp.full_like(cache["length"], length)}
    return self.out(o), new

  def decode_step(self, x: jax.Array, cache: KVCache
                  ) -> tuple[jax.Array, KVCache]:
    """One token per sequence: x [B, D] -> (y [B, D_out], updated cache).

    Appends this token's k, v at position cache['length'][b] (sequences may
    have different lengths) and attends over the first length + 1 entries.
    """
    if not self.causal:
      raise ValueError("prefill/decode need a causal SoftmaxAttention")
    if x.ndim != 2:
      raise ValueError(f"decode_step expects x [B, D], got {x.shape}")
    _check_cache(cache, x.shape[0], self.num_heads, self.head_dim)
    pos = cache["length"]
    q, k, v = self._qkv(x, pos)  # [B, H, Dh]
    hot = jax.nn.one_hot(pos, cache["k"].shape[2], dtype=bool)[:, None, :, None]
    kc = jnp.where(hot, k[:, :, None].astype(cache["k"].dtype), cache["k"])
    vc = jnp.where(hot, v[:, :, None].astype(cache["v"].dtype), cache["v"])
    lengths = pos + 1
    if self.decode_impl == "pallas":
      o = softmax_decode(q, kc, vc, lengths, block_k=self.decode_block_k)
    else:
      o = kref.softmax_decode_step(q, kc, vc, lengths)
    return self.out(o), {"k": kc, "v": vc, "length": lengths}
