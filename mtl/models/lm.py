"""Decoder-only language model (TransNormer / Hybrid blocks, several token mixers), multi-task by prefix token.

`DecoderLM(vocab_size, dim, depth, num_heads, ...)`: tokens int [B, L] ->
{task: logits [B, L, V]} (one shared decoder; every task reads the same logits;
the task is told by the prefix token in the input and the per-task targets are
-1 on other tasks' rows, see mtl/data/text/datasets.py).

Softmax-mixer KV variants: `num_kv_heads` Hkv < H is grouped-query attention (1: multi-query), the
cache holding Hkv heads; `kv_share` = s > 1 is cross-layer attention (CLA, Brandon et al. 2024):
layer i projects K/V only when i % s == 0 and the next s - 1 layers attend over that layer's K/V (their
cache entry is an empty dict), so the cache is 1/s as large. KV-cache bytes per token per layer-group:
2 * Hkv * Dh * 4 (fp32). `kv_cache_bytes(cache)` (mtl.nn.attention) counts them.

Decoding (all per-row positions, so rows can be at different lengths):
  init_cache(batch, max_len)       per layer: softmax KV cache {'k','v': [B,Hkv,Lmax,Dh],
                                   'length' [B]} or lightning state {'kv': [B,H,Dqk,Dh], 'pos' [B]}
  prefill(tokens [B,L], cache)     parallel forward over a prompt into an empty cache
  step(token [B], cache)           one token (Pallas decode kernels when impl='pallas')
  extend(tokens [B,C], cache)      C new tokens after the cache, in parallel (speculative
                                   verification) -> logits and `pending` k/v per layer
  commit(cache, pending, n [B])    append the first n[b] of those C tokens to row b
Width slicing (S2D nested draft models): `slim(width)` is the same network with
dim, heads and GLU width scaled by `width` (head_dim fixed) and
`slice_params(params, model, width)` takes the leading block of every weight.
`__call__(..., width=w)` trains that sub-model with shared weights. (Default
lightning decay rates are s_h = 2^(-8 (h+1) / H) with H the sub-model's head
count, so a slim lightning draft decays its heads faster than the same heads of
the full model; with explicit `decay_slopes` the draft keeps the leading heads'
slopes.)
Mixers: 'softmax' (RoPE and/or learned positions), 'lightning' (per-head
decay_slopes), 'linear' (feature-map linear attention, Based's Taylor map) and
'conv' (a gated short convolution alone); `short_conv=K` puts a gated kernel-K
short convolution before every block's mixer (Zoology's Hybrid). linear, conv
and short_conv use mtl/nn/hybrid_block.py.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.models.registry import MODELS
from mtl.nn.hybrid_block import HybridBlock
from mtl.nn.lightning import SRMSNorm, TransNormerBlock, check_lightning_options

Cache = list[dict[str, jax.Array]]
# softmax / lightning: TransNormerBlock (unless short_conv > 0); linear (feature-map linear attention) and conv
# (the gated short convolution alone): HybridBlock (mtl/nn/hybrid_block.py).
MIXERS = ("softmax", "lightning", "linear", "conv")
_NEG = -1e30


def _scaled(full: int, width: float, divisor: int = 1) -> int:
  c = max(divisor, divisor * math.ceil(width * full / divisor - 1e-9))
  return min(c, full)


class DecoderLM(nn.Module):
  """Causal TransNormer decoder LM.

  Attributes:
    vocab_size: V. dim: model width D (multiple of num_heads). depth: blocks.
    num_heads: H (head_dim = D // H). mlp_ratio: GLU hidden = int(D * ratio).
    mixer: 'softmax' or 'lightning'. impl: 'jnp' or 'pallas' (lightning forward
      and both decode kernels). block_size: lightning block.
    tasks: task names of the output dict.
    hidden_dim: GLU width override (used by `slim`).
    rope: rotary position embedding in softmax mixers (lightning mixers use
      LRPE and decay). Without it (and without learned_positions or a short
      convolution) a softmax LM has no position information.
    learned_positions: size P of a learned absolute position table added to
      the token embedding (0 = none); sequences must be at most P long.
    short_conv: kernel size of a gated short convolution before every block's
      mixer (Zoology's Hybrid; 0 = none); mixer 'conv' is that convolution
      alone. feature_dim, feature_map: q/k width per head and feature map of
      mixer 'linear'. decay_slopes: lightning per-head slopes (one per head).
    lightning_lrpe, lightning_qk_activation: lightning mixer's LRPE and q/k feature map (TransNormerLLM:
      True, 'silu'; False, 'none' is plain decayed linear attention, RetNet-like without its xPos).
    num_kv_heads: softmax mixer: KV heads (divides num_heads; None = num_heads, 1 = MQA).
    kv_share: softmax mixer: adjacent layers sharing one K/V (1: none, 2: CLA2, ...).
  """
  vocab_size: int
  dim: int
  depth: int
  num_heads: int
  mlp_ratio: float = 2.0
  mixer: str = "lightning"
  impl: str = "jnp"
  block_size: int = 64
  tasks: Sequence[str] = ("lm",)
  hidden_dim: int | None = None
  dtype: Any = jnp.float32
  rope: bool = True
  learned_positions: int = 0
  short_conv: int = 0
  feature_dim: int = 16
  feature_map: str = "taylor_exp"
  decay_slopes: tuple[float, ...] | None = None
  lightning_lrpe: bool = True
  lightning_qk_activation: str = "silu"
  num_kv_heads: int | None = None
  kv_share: int = 1

  def setup(self):
    if self.mixer not in MIXERS:
      raise ValueError(f"unknown mixer {self.mixer!r}; expected one of {MIXERS}")
    for name in ("vocab_size", "dim", "depth", "num_heads"):
      if getattr(self, name) <= 0:
        raise ValueError(f"DecoderLM.{name} must be positive, got {getattr(self, name)}")
    if self.dim % self.num_heads:
      raise ValueError(f"dim {self.dim} must be a multiple of num_heads {self.num_heads}")
    if not self.tasks:
      raise ValueError("DecoderLM needs at least one task name")
    if self.kv_share < 1:
      raise ValueError(f"DecoderLM.kv_share must be >= 1, got {self.kv_share}")
    if self.mixer != "softmax" and (self.num_kv_heads is not None or self.kv_share != 1):
      raise ValueError(f"num_kv_heads / kv_share apply to the softmax mixer only, not {self.mixer!r}")
    check_lightning_options(self.mixer, self.lightning_lrpe, self.lightning_qk_activation,
                            "lightning_lrpe / lightning_qk_activation")
    if self.num_kv_heads is not None and (self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads):
      raise ValueError(f"num_kv_heads {self.num_kv_heads} must be positive and divide num_heads {self.num_heads}")
    hidden = self.hidden_dim or int(self.dim * self.mlp_ratio)
    self.embed = nn.Embed(self.vocab_size, self.dim, dtype=self.dtype, name="embed")
    if self.learned_positions < 0:
      raise ValueError(f"DecoderLM.learned_positions must be >= 0, got {self.learned_positions}")
    if self.learned_positions:
      self.pos_embed = nn.Embed(self.learned_positions, self.dim, dtype=self.dtype, name="pos_embed")
    if self.mixer == "conv" and not self.short_conv:
      raise ValueError("mixer 'conv' needs short_conv (its kernel size) > 0")
    if self.uses_hybrid_blocks and (self.num_kv_heads is not None or self.kv_share != 1):
      raise ValueError("num_kv_heads / kv_share are not supported with short_conv or the 'linear' / 'conv' "
                       "mixers (HybridBlock); use the softmax mixer without short_conv")
    if self.uses_hybrid_blocks:
      self.blocks = [
          HybridBlock(self.dim, self.num_heads, mlp_ratio=hidden / self.dim,
                      mixer="none" if self.mixer == "conv" else self.mixer, short_conv=self.short_conv,
                      impl=self.impl, block_size=self.block_size, rope=self.rope, feature_dim=self.feature_dim,
                      feature_map=self.feature_map, decay_slopes=self.decay_slopes, dtype=self.dtype,
                      name=f"block{i}", **self._lightning_kwargs())
          for i in range(self.depth)]
    else:
      extra = {"num_kv_heads": self.num_kv_heads} if self.mixer == "softmax" else self._lightning_kwargs()
      self.blocks = [
          TransNormerBlock(self.dim, self.num_heads, mlp_ratio=hidden / self.dim,
                           causal=True, mixer=self.mixer, impl=self.impl,
                           block_size=self.block_size, dtype=self.dtype,
                           softmax_rope=self.rope, decay_slopes=self.decay_slopes,
                           softmax_project_kv=self.projects_kv(i), name=f"block{i}", **extra)
          for i in range(self.depth)]
    self.norm = SRMSNorm()
    self.head = nn.Dense(self.vocab_size, dtype=self.dtype, name="head")

  def _lightning_kwargs(self) -> dict[str, Any]:
    """Block kwargs of the lightning options ({} for other mixers, whose blocks reject them)."""
    if self.mixer != "lightning":
      return {}
    return {"use_lrpe": self.lightning_lrpe, "qk_activation": self.lightning_qk_activation}

  # --- properties -----------------------------------------------------------
  @property
  def uses_hybrid_blocks(self) -> bool:
    return self.mixer in ("linear", "conv") or self.short_conv > 0

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  @property
  def glu_hidden(self) -> int:
    return self.hidden_dim or int(self.dim * self.mlp_ratio)

  def projects_kv(self, layer: int) -> bool:
    """Whether `layer` has its own K/V (False: it reads the K/V of layer - layer % kv_share)."""
    return layer % self.kv_share == 0

  def slim(self, width: float) -> "DecoderLM":
    """The nested sub-network at `width` in (0, 1] (unbound module)."""
    if not 0.0 < width <= 1.0:
      raise ValueError(f"width must be in (0, 1], got {width}")
    heads = _scaled(self.num_heads, width)
    kv_heads = None
    if self.num_kv_heads is not None:
      # Keep each sub-model query head on the KV head it reads in the full model: whole groups, or
      # (fewer heads than one group) one KV head.
      group = self.num_heads // self.num_kv_heads
      if heads > group:
        heads = _scaled(self.num_heads, width, group)
      kv_heads = max(1, heads // group)
    return DecoderLM(
        self.vocab_size, heads * self.head_dim, self.depth, heads,
        mlp_ratio=self.mlp_ratio, mixer=self.mixer, impl=self.impl,
        block_size=self.block_size, tasks=tuple(self.tasks),
        hidden_dim=_scaled(self.glu_hidden, width), dtype=self.dtype,
        rope=self.rope, learned_positions=self.learned_positions, short_conv=self.short_conv,
        feature_dim=self.feature_dim, feature_map=self.feature_map,
        decay_slopes=None if self.decay_slopes is None else tuple(self.decay_slopes)[:heads],
        lightning_lrpe=self.lightning_lrpe, lightning_qk_activation=self.lightning_qk_activation,
        num_kv_heads=kv_heads, kv_share=self.kv_share, parent=None)

  # --- forward ----------------------------------------------------------------
  def _tokens(self, tokens):
    if tokens.ndim != 2:
      raise ValueError(f"DecoderLM expects tokens [B, L], got {tokens.shape}")
    return tokens.astype(jnp.int32)

  def _logits(self, x):
    return self.head(self.norm(x)).astype(jnp.float32)

  def _embed(self, tokens, positions):
    """Token (+ learned position) embedding: tokens [...], positions int [...] (same shape) -> [..., D]."""
    x = self.embed(tokens)
    if self.learned_positions:
      x = x + self.pos_embed(jnp.minimum(positions, self.learned_positions - 1))
    return x

  def logits(self, tokens: jax.Array, index: jax.Array | None = None) -> jax.Array:
    """tokens int [B, L] -> logits float32 [B, L, V] (full causal forward).

    index int [B, K]: only the logits at those positions, [B, K, V] (saves the head's cost when few positions
    carry targets, e.g. MQAR queries).
    """
    tokens = self._tokens(tokens)
    length = tokens.shape[1]
    if self.learned_positions and length > self.learned_positions:
      raise ValueError(f"sequence length {length} exceeds learned_positions {self.learned_positions}")
    x = self._embed(tokens, jnp.arange(length)[None])
    kv = None
    for i, blk in enumerate(self.blocks):
      if self.mixer == "softmax" and not self.uses_hybrid_blocks:
        # The block's own residual structure, with K/V handed from producing to consuming layers (CLA).
        y, kv = blk.token_mixer(blk.norm(x), kv=None if self.projects_kv(i) else kv, return_kv=True)
        x = x + y
        x = x + blk.glu(blk.norm(x))
      else:
        x = blk(x)
    if index is not None:
      x = jnp.take_along_axis(x, index[..., None].astype(jnp.int32), axis=1)
    return self._logits(x)

  def __call__(self, tokens: jax.Array, *, train: bool = False,
               width: float = 1.0) -> dict[str, jax.Array]:
    """tokens [B, L] (any numeric dtype) -> {task: logits [B, L, V]}."""
    del train  # no dropout
    if width != 1.0 and not self.is_initializing():
      sub = self.slim(width)
      params = slice_params(self.variables["params"], self, width)
      logits = sub.apply({"params": params}, tokens, method=DecoderLM.logits)
    else:
      logits = self.logits(tokens)
    return {t: logits for t in self.tasks}

  # --- decoding ---------------------------------------------------------------
  def init_cache(self, batch: int, max_len: int) -> Cache:
    """Empty per-layer decode state (see module docstring)."""
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"batch and max_len must be positive, got {batch}, {max_len}")
    return [blk.init_state(batch, max_len) if self.projects_kv(i) or self.mixer != "softmax" else {}
            for i, blk in enumerate(self.blocks)]

  def _check_cache(self, cache):
    if not isinstance(cache, (list, tuple)) or len(cache) != self.depth:
      raise ValueError(f"cache must be a list of {self.depth} layer states")

  def step(self, token: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
    """token int [B] -> (logits float32 [B, V], updated cache)."""
    self._check_cache(cache)
    if token.ndim != 1:
      raise ValueError(f"step expects token [B], got {token.shape}")
    x = self._embed(token.astype(jnp.int32), _cache_positions(cache[0]))
    new, shared = [], None
    for i, (blk, st) in enumerate(zip(self.blocks, cache)):
      if self.mixer == "softmax" and not self.uses_hybrid_blocks and not self.projects_kv(i):
        x, _ = blk.step(x, shared)   # CLA consumer: reads the cache its producer just updated
      else:
        x, st = blk.step(x, st)
        shared = st
      new.append(st)
    return self._logits(x), new

  def prefill(self, tokens: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
    """Prompt tokens [B, L] into an empty cache -> (logits [B, L, V], cache)."""
    self._check_cache(cache)
    tokens = self._tokens(tokens)
    b, length = tokens.shape
    x = self._embed(tokens, jnp.arange(length)[None])
    new, shared = [], None
    for i, (blk, st) in enumerate(zip(self.blocks, cache)):
      if isinstance(blk, HybridBlock):
        x, st = blk.prefill(x, st)
        new.append(st)
        continue
      mixer = blk.token_mixer
      h = blk.norm(x)
      if self.mixer == "softmax" and not self.projects_kv(i):
        y, _ = mixer.prefill(h, shared)
      elif self.mixer == "softmax":
        y, st = mixer.prefill(h, st)
        shared = st
      else:
        y = mixer(h)
        pos = jnp.broadcast_to(jnp.arange(length)[None], (b, length))
        _, k, v, _ = mixer._project(h, pos)
        lam_pow = jnp.exp(-mixer.slopes[:, None] * (length - 1 - jnp.arange(length)))
        kv = jnp.einsum("bshk,bshv,hs->bhkv", k.astype(jnp.float32),
                        v.astype(jnp.float32), lam_pow)
        st = {"kv": kv, "pos": jnp.full((b,), length, jnp.int32)}
      x = x + y
      x = x + blk.glu(blk.norm(x))
      new.append(st)
    return self._logits(x), new

  def extend(self, tokens: jax.Array, cache: Cache
             ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    """C tokens [B, C] after each row's cached prefix, in parallel.

    Returns (logits [B, C, V], pending): pending holds each layer's new
    k, v; `commit` appends a prefix of them. The cache is not modified.
    """
    self._check_cache(cache)
    tokens = self._tokens(tokens)
    c = tokens.shape[1]
    x = self._embed(tokens, _cache_positions(cache[0])[:, None] + jnp.arange(c)[None])
    causal = jnp.tril(jnp.ones((c, c), bool))
    pending, shared, shared_kv = [], None, None
    for layer, (blk, st) in enumerate(zip(self.blocks, cache)):
      if isinstance(blk, HybridBlock):
        x, pd = blk.extend(x, st)
        pending.append(pd)
        continue
      mixer = blk.token_mixer
      h = blk.norm(x)
      if self.mixer == "softmax" and not self.projects_kv(layer):
        y, _ = mixer.extend(h, shared, kv=shared_kv)
        pending.append({})
      elif self.mixer == "softmax":
        y, (k, v) = mixer.extend(h, st)
        shared, shared_kv = st, (k, v)
        pending.append({"k": k, "v": v})
      else:
        pos = st["pos"][:, None] + jnp.arange(c)[None]
        q, k, v, u = mixer._project(h, pos)            # [B, C, H, .]
        q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
        slopes = mixer.slopes                          # [H]
        i = jnp.arange(c)
        # o_i = lam^(i+1) q_i S + sum_{s<=i} lam^(i-s) (q_i . k_s) v_s
        inter = jnp.einsum("bchk,bhkv->bchv", q, st["kv"]) * jnp.exp(
            -slopes[None, None, :, None] * (i[None, :, None, None] + 1))
        dec = jnp.where(causal[None], jnp.exp(
            -slopes[:, None, None] * (i[:, None] - i[None, :])[None]), 0.0)
        intra = jnp.einsum("bchk,bshk,hcs,bshv->bchv", q, k, dec, v)
        y = mixer._output((inter + intra).astype(h.dtype), u)
        pending.append({"k": k, "v": v})
      x = x + y
      x = x + blk.glu(blk.norm(x))
    return self._logits(x), pending

  def commit(self, cache: Cache, pending: list[dict[str, jax.Array]],
             n: jax.Array) -> Cache:
    """Append the first n[b] (0 <= n <= C) pending tokens of row b to the cache."""
    self._check_cache(cache)
    new = []
    for blk, st, pd in zip(self.blocks, cache, pending):
      if isinstance(blk, HybridBlock):
        new.append(HybridBlock.commit(st, pd, n))
      elif self.mixer == "softmax" and not pd:
        new.append(st)                     # CLA consumer: no cache of its own
      elif self.mixer == "softmax":
        def write(buf, chunk, start):
          return jax.lax.dynamic_update_slice(
              buf, chunk.astype(buf.dtype), (0, start, 0))
        # Writing all C rows is harmless: entries >= length are never read.
        k = jax.vmap(write)(st["k"], pd["k"], st["length"])
        v = jax.vmap(write)(st["v"], pd["v"], st["length"])
        new.append({"k": k, "v": v, "length": st["length"] + n})
      else:
        c = pd["k"].shape[1]
        slopes = blk.token_mixer.slopes
        i = jnp.arange(c)
        expo = (n[:, None] - 1 - i[None]).astype(jnp.float32)   # [B, C]
        w = jnp.where(i[None] < n[:, None], 1.0, 0.0)[..., None] * jnp.exp(
            -slopes[None, None, :] * jnp.maximum(expo, 0.0)[..., None])  # [B, C, H]
        kv = (jnp.exp(-slopes[None, :, None, None] * n[:, None, None, None])
              * st["kv"] + jnp.einsum("bch,bchk,bchv->bhkv", w, pd["k"], pd["v"]))
        new.append({"kv": kv, "pos": st["pos"] + n})
    return new


def _cache_positions(layer_state: dict[str, jax.Array]) -> jax.Array:
  """Tokens already in a layer's decode state, int [B] (softmax cache 'length', lightning/hybrid 'pos')."""
  return layer_state["pos"] if "pos" in layer_state else layer_state["length"]


@MODELS.register("lm")
def build_lm(model_cfg, tasks, input_shape: tuple[int, ...], mesh=None) -> DecoderLM:
  """DecoderLM from `config.model.lm` (its attributes as keys), one task-prefix per task."""
  del input_shape, mesh
  return DecoderLM(**dict(model_cfg.lm), tasks=tuple(t.name for t in tasks))


def slice_params(params: Any, model: DecoderLM, width: float) -> Any:
  """Leading block of every weight of `model`'s params for `model.slim(width)`."""
  sub = model.slim(width)
  dw = sub.dim
  h, hw = model.num_heads, sub.num_heads
  kvw = sub.num_kv_heads or hw
  f, fw = model.glu_hidden, sub.glu_hidden

  def cut(path, x):
    names = [getattr(p, "key", str(p)) for p in path]
    leaf, parent = names[-1], names[-2] if len(names) > 1 else ""
    if parent in ("embed", "pos_embed"):
      return x[:, :dw]
    if parent == "conv":                   # short conv kernel [K, D], bias [D]
      return x[..., :dw]
    if parent == "proj":                   # short conv gate kernel [D, D], bias [D]
      return x[:dw, :dw] if leaf == "kernel" else x[:dw]
    if parent == "v":                      # linear attention kernel [D, H, Dh], bias [H, Dh]
      return x[:dw, :hw] if leaf == "kernel" else x[:hw]
    if parent == "head":
      return x[:dw] if leaf == "kernel" else x
    if parent in ("qkv", "qkvu", "qk"):          # kernel [D, n, H, Dh], bias [n, H, Dh]
      return x[:dw, :, :hw] if leaf == "kernel" else x[:, :hw]
    if parent == "q":                      # GQA query: kernel [D, H, Dh], bias [H, Dh]
      return x[:dw, :hw] if leaf == "kernel" else x[:hw]
    if parent == "kv":                     # GQA keys / values: kernel [D, 2, Hkv, Dh], bias [2, Hkv, Dh]
      return x[:dw, :, :kvw] if leaf == "kernel" else x[:, :kvw]
    if parent == "out":                    # kernel [H, Dh, D], bias [D]
      return x[:hw, :, :dw] if leaf == "kernel" else x[:dw]
    if parent in ("w1", "w2"):             # [D, F], [F]
      return x[:dw, :fw] if leaf == "kernel" else x[:fw]
    if parent == "w3":                     # [F, D], [D]
      return x[:fw, :dw] if leaf == "kernel" else x[:dw]
    raise ValueError(f"slice_params: unknown parameter {'/'.join(names)} {x.shape}")

  del h, f
  return jax.tree_util.tree_map_with_path(cut, params)
