"""Decoder-only language model (TransNormer blocks, softmax or lightning mixer), multi-task by prefix token.

`DecoderLM(vocab_size, dim, depth, num_heads, ...)`: tokens int [B, L] ->
{task: logits [B, L, V]} (one shared decoder; every task reads the same logits;
the task is told by the prefix token in the input and the per-task targets are
-1 on other tasks' rows, see mtl/data/text/datasets.py).

Decoding (all per-row positions, so rows can be at different lengths):
  init_cache(batch, max_len)       per layer: softmax KV cache {'k','v': [B,H,Lmax,Dh],
                                   'length' [B]} or lightning state {'kv': [B,H,Dqk,Dh], 'pos' [B]}
  prefill(tokens [B,L], cache)     parallel forward over a prompt into an empty cache
  step(token [B], cache)           one token (Pallas decode kernels when impl='pallas')
  extend(tokens [B,C], cache)      C new tokens after the cache, in parallel (speculative
                                   verification) -> logits and `pending` k/v per layer
  commit(cache, pending, n [B])    append the first n[b] of those C tokens to row b
Width slicing (S2D nested draft models): `slim(width)` is the same network with
dim, heads and GLU width scaled by `width` (head_dim fixed) and
`slice_params(params, model, width)` takes the leading block of every weight.
`__call__(..., width=w)` trains that sub-model with shared weights. (Lightning
decay rates are s_h = 2^(-8 (h+1) / H) with H the sub-model's head count, so a
slim lightning draft decays its heads faster than the same heads of the full
model: TransNormerBlock does not take a decay base to keep them equal.)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.models.registry import MODELS
from mtl.nn.lightning import SRMSNorm, TransNormerBlock

Cache = list[dict[str, jax.Array]]
MIXERS = ("softmax", "lightning")
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
      LRPE and decay). Without it a softmax LM has no position information.
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
    hidden = self.hidden_dim or int(self.dim * self.mlp_ratio)
    self.embed = nn.Embed(self.vocab_size, self.dim, dtype=self.dtype, name="embed")
    self.blocks = [
        TransNormerBlock(self.dim, self.num_heads, mlp_ratio=hidden / self.dim,
                         causal=True, mixer=self.mixer, impl=self.impl,
                         block_size=self.block_size, dtype=self.dtype,
                         softmax_rope=self.rope, name=f"block{i}")
        for i in range(self.depth)]
    self.norm = SRMSNorm()
    self.head = nn.Dense(self.vocab_size, dtype=self.dtype, name="head")

  # --- properties -----------------------------------------------------------
  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  @property
  def glu_hidden(self) -> int:
    return self.hidden_dim or int(self.dim * self.mlp_ratio)

  def slim(self, width: float) -> "DecoderLM":
    """The nested sub-network at `width` in (0, 1] (unbound module)."""
    if not 0.0 < width <= 1.0:
      raise ValueError(f"width must be in (0, 1], got {width}")
    heads = _scaled(self.num_heads, width)
    return DecoderLM(
        self.vocab_size, heads * self.head_dim, self.depth, heads,
        mlp_ratio=self.mlp_ratio, mixer=self.mixer, impl=self.impl,
        block_size=self.block_size, tasks=tuple(self.tasks),
        hidden_dim=_scaled(self.glu_hidden, width), dtype=self.dtype,
        rope=self.rope, parent=None)

  # --- forward ----------------------------------------------------------------
  def _tokens(self, tokens):
    if tokens.ndim != 2:
      raise ValueError(f"DecoderLM expects tokens [B, L], got {tokens.shape}")
    return tokens.astype(jnp.int32)

  def _logits(self, x):
    return self.head(self.norm(x)).astype(jnp.float32)

  def logits(self, tokens: jax.Array) -> jax.Array:
    """tokens int [B, L] -> logits float32 [B, L, V] (full causal forward)."""
    x = self.embed(self._tokens(tokens))
    for blk in self.blocks:
      x = blk(x)
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
    return [blk.init_state(batch, max_len) for blk in self.blocks]

  def _check_cache(self, cache):
    if not isinstance(cache, (list, tuple)) or len(cache) != self.depth:
      raise ValueError(f"cache must be a list of {self.depth} layer states")

  def step(self, token: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
    """token int [B] -> (logits float32 [B, V], updated cache)."""
    self._check_cache(cache)
    if token.ndim != 1:
      raise ValueError(f"step expects token [B], got {token.shape}")
    x = self.embed(token.astype(jnp.int32))
    new = []
    for blk, st in zip(self.blocks, cache):
      x, st = blk.step(x, st)
      new.append(st)
    return self._logits(x), new

  def prefill(self, tokens: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
    """Prompt tokens [B, L] into an empty cache -> (logits [B, L, V], cache)."""
    self._check_cache(cache)
    tokens = self._tokens(tokens)
    x = self.embed(tokens)
    b, length = tokens.shape
    new = []
    for blk, st in zip(self.blocks, cache):
      mixer = blk.token_mixer
      h = blk.norm(x)
      if self.mixer == "softmax":
        y, st = mixer.prefill(h, st)
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
    x = self.embed(tokens)
    c = tokens.shape[1]
    causal = jnp.tril(jnp.ones((c, c), bool))
    pending = []
    for blk, st in zip(self.blocks, cache):
      mixer = blk.token_mixer
      h = blk.norm(x)
      if self.mixer == "softmax":
        pos = st["length"][:, None] + jnp.arange(c)[None]
        q, k, v = mixer._qkv(h, pos)                   # [B, C, H, Dh]
        scale = 1.0 / math.sqrt(self.head_dim)
        kc, vc = st["k"].astype(jnp.float32), st["v"].astype(jnp.float32)
        s_cache = jnp.einsum("bchd,bhld->bhcl", q, kc) * scale
        valid = jnp.arange(kc.shape[2])[None, :] < st["length"][:, None]
        s_cache = jnp.where(valid[:, None, None, :], s_cache, _NEG)
        s_new = jnp.where(causal, jnp.einsum("bchd,bshd->bhcs", q, k) * scale, _NEG)
        p = jax.nn.softmax(jnp.concatenate([s_cache, s_new], -1), axis=-1)
        lmax = kc.shape[2]
        o = (jnp.einsum("bhcl,bhld->bchd", p[..., :lmax], vc)
             + jnp.einsum("bhcs,bshd->bchd", p[..., lmax:], v))
        y = mixer.out(o.astype(h.dtype))
        pending.append({"k": jnp.swapaxes(k, 1, 2), "v": jnp.swapaxes(v, 1, 2)})
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
      if self.mixer == "softmax":
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
  f, fw = model.glu_hidden, sub.glu_hidden

  def cut(path, x):
    names = [getattr(p, "key", str(p)) for p in path]
    leaf, parent = names[-1], names[-2] if len(names) > 1 else ""
    if parent == "embed":
      return x[:, :dw]
    if parent == "head":
      return x[:dw] if leaf == "kernel" else x
    if parent in ("qkv", "qkvu"):          # kernel [D, n, H, Dh], bias [n, H, Dh]
      return x[:dw, :, :hw] if leaf == "kernel" else x[:, :hw]
    if parent == "out":                    # kernel [H, Dh, D], bias [D]
      return x[:hw, :, :dw] if leaf == "kernel" else x[:dw]
    if parent in ("w1", "w2"):             # [D, F], [F]
      return x[:dw, :fw] if leaf == "kernel" else x[:fw]
    if parent == "w3":                     # [F, D], [D]
      return x[:fw, :dw] if leaf == "kernel" else x[:dw]
    raise ValueError(f"slice_params: unknown parameter {'/'.join(names)} {x.shape}")

  del h, f
  return jax.tree_util.tree_map_with_path(cut, params)
