"""Softmax attention (multi-head, grouped-query, multi-query) with a KV cache for decoding.

`SoftmaxAttention(num_heads, head_dim, causal, num_kv_heads=None)` maps x [B, L, D] -> [B, L, D_out]
(D_out = out_dim or num_heads * head_dim) with `jax.nn.dot_product_attention`.
Grouped-query attention (GQA, Ainslie et al. 2023): `num_kv_heads` = Hkv dividing H; query head h reads
KV head h // (H / Hkv) (consecutive groups, as jax.nn.dot_product_attention groups them); Hkv = 1 is
multi-query attention (MQA), Hkv = H (or None) multi-head attention. Parameters: MHA keeps one fused
`qkv` projection [D, 3, H, Dh] (so existing checkpoints load); GQA/MQA have `q` [D, H, Dh] and `kv`
[D, 2, Hkv, Dh]. `pool_kv_heads(params, Hkv)` turns MHA parameters into GQA ones by mean-pooling the K
and V projections of each group (the GQA paper's uptraining initialisation).
Cross-layer attention (CLA, Brandon et al. 2024): with `project_kv=False` the layer has only a query
projection and attends over K/V given by another layer (`kv=` in `__call__`, the shared cache in
prefill / decode_step / extend).
Decoding: `init_kv_cache(batch, max_len, num_kv_heads, head_dim)` builds a cache
{'k', 'v': [B, Hkv, Lmax, Dh], 'length': int32 [B]} (sized by KV heads: Hkv / H of the multi-head
bytes); `SoftmaxAttention.prefill` writes a prompt into it and `SoftmaxAttention.decode_step` consumes
one token per sequence (x [B, D]) using `kernels.softmax_decode` ('pallas': fixed k-splits, one program
per KV head serving its whole query group), `kernels.lean_decode` ('lean': Lean Attention, the cache
split evenly over a fixed number of programs) or the jnp reference ('jnp').

Positions: with `rope=True`, q and k are rotated by their absolute positions
(RoPE, Su et al. 2021: pairs (x_i, x_{i+Dh/2}) rotated by pos * base^(-2i/Dh)),
so q.k depends only on the relative offset. The cache stores rotated keys; the
forward uses positions 0..L-1, prefill the same, decode the cache length.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import reference as kref
from kernels.lean_decode import lean_decode
from kernels.softmax_decode import softmax_decode

KVCache = dict[str, jax.Array]

ATTN_IMPLS = (None, "xla", "cudnn")
DECODE_IMPLS = ("jnp", "pallas", "lean")
_NEG = -1e30


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


def init_kv_cache(batch: int, max_len: int, num_kv_heads: int, head_dim: int,
                  dtype: Any = jnp.float32) -> KVCache:
  """Empty KV cache: k, v [B, Hkv, max_len, head_dim] zeros, length int32 [B] (Hkv: KV heads)."""
  for name, val in (("batch", batch), ("max_len", max_len),
                    ("num_kv_heads", num_kv_heads), ("head_dim", head_dim)):
    if val <= 0:
      raise ValueError(f"init_kv_cache: {name} must be positive, got {val}")
  shape = (batch, num_kv_heads, max_len, head_dim)
  return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype),
          "length": jnp.zeros((batch,), jnp.int32)}


def _check_cache(cache: KVCache, batch: int, heads: int, head_dim: int):
  if set(cache) != {"k", "v", "length"}:
    raise ValueError(f"KV cache must have keys k, v, length; got {sorted(cache)}")
  k = cache["k"]
  if k.ndim != 4 or k.shape[0] != batch or k.shape[1] != heads or (
      k.shape[3] != head_dim):
    raise ValueError(f"KV cache k must be [B={batch}, Hkv={heads}, Lmax, "
                     f"Dh={head_dim}], got {k.shape}")


def kv_cache_bytes(cache: Any) -> int:
  """Bytes of the k / v arrays of a cache or a list of per-layer caches (lengths not counted)."""
  leaves = [c for c in (cache if isinstance(cache, (list, tuple)) else [cache])]
  return sum(int(c[n].size) * c[n].dtype.itemsize for c in leaves for n in ("k", "v") if n in c)


def convert_qkv_modules(params: Any, num_kv_heads: int, convert: Callable[[dict, str, int], dict],
                        who: str) -> Any:
  """Walks a parameter tree and replaces every module dict holding a multi-head `qkv` projection (kernel
  [D, 3, H, Dh]) by `convert(module, path, g)` (g = H / num_kv_heads, the group size), after checking the kernel
  and that num_kv_heads divides H; other entries are kept. Errors name `who` and the module's path; a tree with
  no such module is an error. The walk shared by the KV-head poolings (`pool_kv_heads`,
  `mtl.nn.kv_pooling.pool_kv_heads_svd`)."""
  if num_kv_heads <= 0:
    raise ValueError(f"num_kv_heads must be positive, got {num_kv_heads}")
  found = [0]

  def walk(tree, path):
    if not isinstance(tree, dict) and not hasattr(tree, "items"):
      return tree
    tree = dict(tree)
    if "qkv" in tree:
      kern = tree["qkv"]["kernel"]
      if kern.ndim != 4 or kern.shape[1] != 3:
        raise ValueError(f"{who}: {path}/qkv/kernel must be [D, 3, H, Dh], got {kern.shape}")
      h = kern.shape[2]
      if h % num_kv_heads:
        raise ValueError(f"{who}: {path} has {h} heads, not a multiple of num_kv_heads {num_kv_heads}")
      tree = convert(tree, path, h // num_kv_heads)
      found[0] += 1
    return {k: walk(v, f"{path}/{k}") for k, v in tree.items()}

  out = walk(params, "")
  if not found[0]:
    raise ValueError(f"{who}: no multi-head `qkv` projection in these parameters")
  return out


def pool_kv_heads(params: Any, num_kv_heads: int) -> Any:
  """Multi-head -> grouped-query parameters: every `qkv` projection in the tree (kernel [D, 3, H, Dh],
  bias [3, H, Dh]) becomes `q` (its query part) and `kv` ([D, 2, Hkv, Dh], [2, Hkv, Dh]: the mean of the
  key / value projections over each group of H / Hkv consecutive heads). Other entries are kept.
  Mean-pooling the projections equals mean-pooling the projected (and RoPE-rotated) keys and values."""
  def convert(tree: dict, path: str, g: int) -> dict:
    del path
    qkv = dict(tree.pop("qkv"))
    kern = qkv["kernel"]
    pool = lambda a, ax: a.reshape(a.shape[:ax] + (num_kv_heads, g) + a.shape[ax + 1:]).mean(ax + 1)
    tree["q"] = {"kernel": kern[:, 0]}
    tree["kv"] = {"kernel": pool(kern[:, 1:], 2)}
    if "bias" in qkv:
      tree["q"]["bias"] = qkv["bias"][0]
      tree["kv"]["bias"] = pool(qkv["bias"][1:], 1)
    return tree

  return convert_qkv_modules(params, num_kv_heads, convert, "pool_kv_heads")


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
    num_kv_heads: Hkv KV heads (divides num_heads); None = num_heads (MHA), 1 = MQA.
    project_kv: False for a cross-layer-attention consumer: no K/V projection, reads another
      layer's K/V.
    decode_programs: programs of the Lean decode kernel (decode_impl='lean' only; None = its default).
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
  num_kv_heads: int | None = None
  project_kv: bool = True
  decode_programs: int | None = None

  @property
  def kv_heads(self) -> int:
    return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

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
    if self.kv_heads <= 0 or self.num_heads % self.kv_heads:
      raise ValueError(f"num_kv_heads {self.num_kv_heads} must be positive and divide num_heads "
                       f"{self.num_heads}")
    if self.decode_programs is not None and self.decode_impl != "lean":
      raise ValueError(f"decode_programs={self.decode_programs} only applies to decode_impl='lean', "
                       f"not {self.decode_impl!r}")
    if self.kv_heads == self.num_heads and self.project_kv:
      self.qkv = nn.DenseGeneral((3, self.num_heads, self.head_dim), dtype=self.dtype, name="qkv")
    else:
      self.q = nn.DenseGeneral((self.num_heads, self.head_dim), dtype=self.dtype, name="q")
      if self.project_kv:
        self.kv = nn.DenseGeneral((2, self.kv_heads, self.head_dim), dtype=self.dtype, name="kv")
    self.out = nn.DenseGeneral(self.out_dim or self.num_heads * self.head_dim,
                               axis=(-2, -1), dtype=self.dtype, name="out")

  def _qkv(self, x, positions=None):
    """q [..., H, Dh], k, v [..., Hkv, Dh] of x [..., D] (k, v None without project_kv); with `rope`, q and k
    rotated at positions [...] (x.shape[:-1])."""
    if self.kv_heads == self.num_heads and self.project_kv:
      qkv = self.qkv(x)  # [..., 3, H, Dh]
      q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    else:
      q, k, v = self.q(x), None, None
      if self.project_kv:
        kv = self.kv(x)  # [..., 2, Hkv, Dh]
        k, v = kv[..., 0, :, :], kv[..., 1, :, :]
    if self.rope:
      if positions is None:
        raise ValueError("SoftmaxAttention with rope needs token positions")
      q = rope(q, positions, self.rope_base)
      k = None if k is None else rope(k, positions, self.rope_base)
    return q, k, v

  def _shared_kv(self, kv, what):
    """The K/V a layer without its own projection reads (cross-layer attention); checks presence."""
    if self.project_kv and kv is not None:
      raise ValueError(f"{what}: this layer projects its own K/V; do not pass kv")
    if not self.project_kv and kv is None:
      raise ValueError(f"{what}: a project_kv=False (cross-layer) layer needs the K/V of another layer")

  def _positions(self, x):
    b, length = x.shape[:2]
    return jnp.broadcast_to(jnp.arange(length)[None], (b, length))

  def __call__(self, x: jax.Array, kv: tuple[jax.Array, jax.Array] | None = None,
               return_kv: bool = False):
    """x [B, L, D] -> y [B, L, D_out]; with return_kv, (y, (k, v)) with k, v [B, L, Hkv, Dh] (RoPE'd).

    kv: the (k, v) of another layer, required when project_kv is False (cross-layer attention).
    """
    if x.ndim != 3:
      raise ValueError(f"SoftmaxAttention expects x [B, L, D], got {x.shape}")
    self._shared_kv(kv, "SoftmaxAttention")
    q, k, v = self._qkv(x, self._positions(x))  # q [B, L, H, Dh], k, v [B, L, Hkv, Dh]
    if kv is not None:
      k, v = kv
      if k.shape != q.shape[:2] + (self.kv_heads, self.head_dim) or v.shape != k.shape:
        raise ValueError(f"shared kv must be [B, L, Hkv={self.kv_heads}, Dh={self.head_dim}], got "
                         f"{k.shape}, {v.shape}")
    o = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal,
                                     implementation=self.implementation)
    y = self.out(o)
    return (y, (k, v)) if return_kv else y

  def prefill(self, x: jax.Array, cache: KVCache
              ) -> tuple[jax.Array, KVCache]:
    """Causal attention over a prompt x [B, L, D] written at cache[:, :, :L].

    The cache must be empty (length 0). Returns (y [B, L, D_out], cache with
    length L). A project_kv=False layer reads its K/V from `cache`, which the
    producing layer has just filled (its length L), and returns it unchanged.
    """
    if not self.causal:
      raise ValueError("prefill/decode need a causal SoftmaxAttention")
    b, length = x.shape[:2]
    _check_cache(cache, b, self.kv_heads, self.head_dim)
    if length > cache["k"].shape[2]:
      raise ValueError(f"prompt length {length} exceeds cache length "
                       f"{cache['k'].shape[2]}")
    q, k, v = self._qkv(x, self._positions(x))
    if not self.project_kv:
      k, v = (jnp.swapaxes(cache[n][:, :, :length], 1, 2).astype(q.dtype) for n in ("k", "v"))
      o = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=self.implementation)
      return self.out(o), cache
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
    A project_kv=False layer reads the cache the producing layer has just
    updated with this token (query position length - 1) and returns it as is.
    """
    if not self.causal:
      raise ValueError("prefill/decode need a causal SoftmaxAttention")
    if x.ndim != 2:
      raise ValueError(f"decode_step expects x [B, D], got {x.shape}")
    _check_cache(cache, x.shape[0], self.kv_heads, self.head_dim)
    if not self.project_kv:
      lengths = cache["length"]
      q, _, _ = self._qkv(x, lengths - 1)
      return self.out(self._decode_attend(q, cache["k"], cache["v"], lengths)), cache
    pos = cache["length"]
    q, k, v = self._qkv(x, pos)  # q [B, H, Dh], k, v [B, Hkv, Dh]
    hot = jax.nn.one_hot(pos, cache["k"].shape[2], dtype=bool)[:, None, :, None]
    kc = jnp.where(hot, k[:, :, None].astype(cache["k"].dtype), cache["k"])
    vc = jnp.where(hot, v[:, :, None].astype(cache["v"].dtype), cache["v"])
    lengths = pos + 1
    o = self._decode_attend(q, kc, vc, lengths)
    return self.out(o), {"k": kc, "v": vc, "length": lengths}

  def _decode_attend(self, q, kc, vc, lengths):
    """q [B, H, Dh] over caches [B, Hkv, Lmax, Dh] with `lengths` valid rows -> [B, H, Dh]."""
    if self.decode_impl == "pallas":
      return softmax_decode(q, kc, vc, lengths, block_k=self.decode_block_k)
    if self.decode_impl == "lean":
      return lean_decode(q, kc, vc, lengths, block_k=self.decode_block_k, num_programs=self.decode_programs)
    return kref.softmax_decode_step(q, kc, vc, lengths)

  def extend(self, x: jax.Array, cache: KVCache, kv: tuple[jax.Array, jax.Array] | None = None
             ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """C tokens x [B, C, D] after each row's cached prefix, in parallel, cache unchanged.

    Returns (y [B, C, D_out], (k, v) [B, Hkv, C, Dh]: the new tokens' keys / values, to be appended by the
    caller). kv: those of the producing layer, required when project_kv is False (cross-layer attention).
    """
    b, c = x.shape[:2]
    _check_cache(cache, b, self.kv_heads, self.head_dim)
    self._shared_kv(kv, "extend")
    pos = cache["length"][:, None] + jnp.arange(c)[None]
    q, k, v = self._qkv(x, pos)                   # q [B, C, H, Dh], k, v [B, C, Hkv, Dh]
    if kv is not None:
      k, v = (jnp.swapaxes(a, 1, 2) for a in kv)
    g = self.num_heads // self.kv_heads
    qg = q.reshape(b, c, self.kv_heads, g, self.head_dim).astype(jnp.float32)
    scale = 1.0 / math.sqrt(self.head_dim)
    kc, vc = cache["k"].astype(jnp.float32), cache["v"].astype(jnp.float32)
    s_cache = jnp.einsum("bckgd,bkld->bkgcl", qg, kc) * scale
    valid = jnp.arange(kc.shape[2])[None, :] < cache["length"][:, None]
    s_cache = jnp.where(valid[:, None, None, None, :], s_cache, _NEG)
    causal = jnp.tril(jnp.ones((c, c), bool))
    s_new = jnp.where(causal, jnp.einsum("bckgd,bskd->bkgcs", qg, k.astype(jnp.float32)) * scale, _NEG)
    p = jax.nn.softmax(jnp.concatenate([s_cache, s_new], -1), axis=-1)
    lmax = kc.shape[2]
    o = (jnp.einsum("bkgcl,bkld->bckgd", p[..., :lmax], vc)
         + jnp.einsum("bkgcs,bskd->bckgd", p[..., lmax:], v.astype(jnp.float32)))
    y = self.out(o.reshape(b, c, self.num_heads, self.head_dim).astype(x.dtype))
    return y, (jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2))
