"""A decoder block with an optional gated short convolution before its token mixer (Zoology's `Hybrid`).

`HybridBlock`: x + conv(norm(x)) [if short_conv > 0], then x + mixer(norm(x)) [unless mixer 'none'], then
x + GLU(norm(x)). mixer: 'softmax' (SoftmaxAttention, optional RoPE), 'lightning' (LightningAttention, decay
slopes configurable per head), 'linear' (LinearAttention with a feature map, Based's Taylor map by default) or
'none' (the short convolution alone). Causal only. Parameter names match TransNormerBlock ('mixer', 'glu') plus
'conv', so width slicing of nested drafts reads the same weights.

Decoding: `init_state(batch, max_len)` -> {'pos' [B], 'conv' [B, K-1, D] (with a conv), 'mixer': the mixer's
state}; `step(x [B, D], state)`; `prefill(x [B, L, D], empty state)` in parallel; `extend(x [B, C, D], state)`
-> (y, pending: the state after each of the C tokens, stacked on axis 0) and `commit(state, pending, n [B])`
keeps row b's state after n[b] of them (speculative verification; C is small).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.nn import feature_maps
from mtl.nn.attention import SoftmaxAttention, init_kv_cache
from mtl.nn.lightning import GLU, LightningAttention, SRMSNorm, check_decay_slopes, check_lightning_options
from mtl.nn.linear_attention import LinearAttention
from mtl.nn.short_conv import GatedShortConv

HYBRID_MIXERS = ("softmax", "lightning", "linear", "none")

State = dict[str, Any]


class HybridBlock(nn.Module):
  """Attributes: dim, num_heads (head_dim = dim // num_heads), mlp_ratio, mixer (HYBRID_MIXERS), short_conv
  (kernel size, 0 = none), impl/block_size (lightning), rope (softmax), feature_dim/feature_map (linear),
  decay_slopes, use_lrpe, qk_activation (lightning: see LightningAttention)."""
  dim: int
  num_heads: int
  mlp_ratio: float = 2.0
  mixer: str = "softmax"
  short_conv: int = 0
  impl: str = "jnp"
  block_size: int = 64
  rope: bool = True
  feature_dim: int = 16
  feature_map: str = "taylor_exp"
  decay_slopes: tuple[float, ...] | None = None
  use_lrpe: bool = True
  qk_activation: str = "silu"
  dtype: Any = jnp.float32

  def setup(self):
    if self.mixer not in HYBRID_MIXERS:
      raise ValueError(f"unknown mixer {self.mixer!r}; expected one of {HYBRID_MIXERS}")
    if self.num_heads <= 0 or self.dim % self.num_heads:
      raise ValueError(f"dim {self.dim} must be a positive multiple of num_heads {self.num_heads}")
    if self.short_conv < 0:
      raise ValueError(f"short_conv (kernel size) must be >= 0, got {self.short_conv}")
    if self.mixer == "none" and not self.short_conv:
      raise ValueError("mixer 'none' needs short_conv > 0: the block would mix no tokens")
    if self.mixer != "lightning" and self.decay_slopes is not None:
      raise ValueError(f"decay_slopes is a lightning-mixer option, not used by mixer {self.mixer!r}")
    check_lightning_options(self.mixer, self.use_lrpe, self.qk_activation)
    if self.mixer == "lightning":
      check_decay_slopes(self.decay_slopes, self.num_heads)
    head_dim = self.dim // self.num_heads
    if self.short_conv:
      self.conv = GatedShortConv(self.dim, self.short_conv, dtype=self.dtype, name="conv")
    if self.mixer == "softmax":
      self.token_mixer = SoftmaxAttention(self.num_heads, head_dim, causal=True, out_dim=self.dim,
                                          decode_impl=self.impl, dtype=self.dtype, rope=self.rope, name="mixer")
    elif self.mixer == "lightning":
      self.token_mixer = LightningAttention(self.num_heads, head_dim, causal=True, block_size=self.block_size,
                                            impl=self.impl, decay_slopes=self.decay_slopes, out_dim=self.dim,
                                            use_lrpe=self.use_lrpe, qk_activation=self.qk_activation,
                                            dtype=self.dtype, name="mixer")
    elif self.mixer == "linear":
      self.token_mixer = LinearAttention(self.num_heads, self.feature_dim, head_dim, feature_map=self.feature_map,
                                         out_dim=self.dim, dtype=self.dtype, name="mixer")
    hidden = int(self.dim * self.mlp_ratio)
    if hidden <= 0:
      raise ValueError(f"mlp_ratio {self.mlp_ratio} gives no GLU width")
    self.glu = GLU(hidden, out_dim=self.dim, dtype=self.dtype, name="glu")
    self.norm = SRMSNorm()

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, dim] -> same (causal)."""
    if x.ndim != 3 or x.shape[-1] != self.dim:
      raise ValueError(f"HybridBlock expects x [B, L, {self.dim}], got {x.shape}")
    if self.short_conv:
      x = x + self.conv(self.norm(x))
    if self.mixer != "none":
      x = x + self.token_mixer(self.norm(x))
    return x + self.glu(self.norm(x))

  # --- decoding ---------------------------------------------------------------
  def init_state(self, batch: int, max_len: int) -> State:
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"batch and max_len must be positive, got {batch}, {max_len}")
    head_dim = self.dim // self.num_heads
    st: State = {"pos": jnp.zeros((batch,), jnp.int32)}
    if self.short_conv:
      st["conv"] = jnp.zeros((batch, self.short_conv - 1, self.dim), jnp.float32)
    if self.mixer == "softmax":
      st["mixer"] = init_kv_cache(batch, max_len, self.num_heads, head_dim)
    elif self.mixer == "lightning":
      qk = 2 * head_dim if self.use_lrpe else head_dim
      st["mixer"] = {"kv": jnp.zeros((batch, self.num_heads, qk, head_dim), jnp.float32),
                     "pos": jnp.zeros((batch,), jnp.int32)}
    elif self.mixer == "linear":
      f = LinearAttention(self.num_heads, self.feature_dim, head_dim, feature_map=self.feature_map,
                          parent=None).state_features
      st["mixer"] = {"s": jnp.zeros((batch, self.num_heads, f, head_dim), jnp.float32),
                     "z": jnp.zeros((batch, self.num_heads, f), jnp.float32)}
    return st

  def step(self, x: jax.Array, state: State) -> tuple[jax.Array, State]:
    """One token per row: x [B, dim] -> (y [B, dim], new state)."""
    new = {"pos": state["pos"] + 1}
    if self.short_conv:
      h, new["conv"] = self.conv.step(self.norm(x), state["conv"])
      x = x + h
    if self.mixer == "softmax":
      h, new["mixer"] = self.token_mixer.decode_step(self.norm(x), state["mixer"])
    elif self.mixer != "none":
      h, new["mixer"] = self.token_mixer.step(self.norm(x), state["mixer"])
    if self.mixer != "none":
      x = x + h
    return x + self.glu(self.norm(x)), new

  def prefill(self, x: jax.Array, state: State) -> tuple[jax.Array, State]:
    """A prompt x [B, L, dim] into an empty state, in parallel -> (y [B, L, dim], state after L tokens)."""
    b, length, _ = x.shape
    new = {"pos": state["pos"] + length}
    if self.short_conv:
      h = self.norm(x)
      hist = jnp.concatenate([state["conv"].astype(h.dtype), h], 1)[:, length:]
      new["conv"] = hist.astype(state["conv"].dtype)
      x = x + self.conv(h)
    if self.mixer != "none":
      h = self.norm(x)
      mixer = self.token_mixer
      if self.mixer == "softmax":
        y, new["mixer"] = mixer.prefill(h, state["mixer"])
      elif self.mixer == "lightning":
        y = mixer(h)
        _, k, v, _ = mixer._project(h, jnp.broadcast_to(jnp.arange(length)[None], (b, length)))
        lam_pow = jnp.exp(-mixer.slopes[:, None] * (length - 1 - jnp.arange(length)))
        kv = jnp.einsum("bshk,bshv,hs->bhkv", k.astype(jnp.float32), v.astype(jnp.float32), lam_pow)
        new["mixer"] = {"kv": kv, "pos": state["mixer"]["pos"] + length}
      else:
        y = mixer(h)
        _, k, v = mixer._project(h)
        fk = feature_maps.feature_map(self.feature_map, k).astype(jnp.float32)   # [B, L, H, F']
        new["mixer"] = {"s": state["mixer"]["s"] + jnp.einsum("blhf,blhd->bhfd", fk, v.astype(jnp.float32)),
                        "z": state["mixer"]["z"] + fk.sum(1)}
      x = x + y
    return x + self.glu(self.norm(x)), new

  def extend(self, x: jax.Array, state: State) -> tuple[jax.Array, State]:
    """C tokens x [B, C, dim] after the state, token by token (C is small: speculative verification).

    Returns (y [B, C, dim], pending: the state after each token, every leaf stacked on a new axis 0 [C, ...]).
    """
    ys, states = [], []
    for i in range(x.shape[1]):
      y, state = self.step(x[:, i], state)
      ys.append(y)
      states.append(state)
    return jnp.stack(ys, 1), jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)

  @staticmethod
  def commit(state: State, pending: State, n: jax.Array) -> State:
    """Row b keeps its state after the first n[b] (0 <= n <= C) pending tokens."""
    def pick(old, stacked):
      idx = jnp.clip(n - 1, 0, stacked.shape[0] - 1)
      chosen = jnp.take_along_axis(stacked, idx.reshape((1, -1) + (1,) * (stacked.ndim - 2)), 0)[0]
      keep = (n == 0).reshape((-1,) + (1,) * (old.ndim - 1))
      return jnp.where(keep, old, chosen.astype(old.dtype))
    return jax.tree_util.tree_map(pick, state, pending)
