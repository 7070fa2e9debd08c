"""TransNormer-style layers: lightning attention, SRMSNorm, GLU, the block.

Following TransNormerLLM ("Scaling TransNormer to 175B"):
  Q = silu(X Wq), K = silu(X Wk), V = X Wv, U = X Wu  (q/k feature map selectable: `qk_activation`),
  LRPE:  q_t -> [q_t cos(t theta), q_t sin(t theta)] (same for k), so q.k
         depends on cos((t - s) theta) only (relative positions),
  O = SRMSNorm(decayed linear attention(Q, K, V)) * U,   Y = O Wo,
with per-head decay lambda_h = exp(-s_h), s_h = kernels.reference.decay_slopes.
Non-causal (encoder) attention uses the symmetric decay lambda^|t - s|.

`TransNormerBlock`: x + mixer(SRMSNorm(x)), then + GLU(SRMSNorm(.)); the mixer
is lightning or softmax attention (selected by `mixer`). Causal blocks decode
token by token: `init_state(batch, max_len)` then `step(x [B, D], state)`.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import reference as kref
from kernels.lightning_attention import lightning_attention
from kernels.linear_decode import linear_decode
from mtl.nn.attention import SoftmaxAttention, init_kv_cache

IMPLS = ("jnp", "pallas")
MIXERS = ("lightning", "softmax")
_ACTS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "none": lambda x: x, "silu": nn.silu, "gelu": nn.gelu,
    "sigmoid": nn.sigmoid}


class SRMSNorm(nn.Module):
  """Simple RMSNorm (no gain): x / sqrt(mean(x^2, -1) + eps). Any shape."""
  eps: float = 1e-6

  def __call__(self, x: jax.Array) -> jax.Array:
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return y.astype(x.dtype)


class GLU(nn.Module):
  """Gated linear unit: W3 (act(W1 x) * W2 x). x [..., D] -> [..., out_dim].

  activation 'none' gives TransNormerLLM's SGLU; out_dim defaults to D.
  """
  hidden_dim: int
  out_dim: int | None = None
  activation: str = "none"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.activation not in _ACTS:
      raise ValueError(f"unknown GLU activation {self.activation!r}; "
                       f"expected one of {sorted(_ACTS)}")
    if self.hidden_dim <= 0:
      raise ValueError(f"hidden_dim must be positive, got {self.hidden_dim}")
    gate = _ACTS[self.activation](
        nn.Dense(self.hidden_dim, dtype=self.dtype, name="w1")(x))
    h = gate * nn.Dense(self.hidden_dim, dtype=self.dtype, name="w2")(x)
    return nn.Dense(self.out_dim or x.shape[-1], dtype=self.dtype,
                    name="w3")(h)


def lrpe(x: jax.Array, positions: jax.Array, theta: jax.Array) -> jax.Array:
  """LRPE: x [..., L?, H, Dh] at positions (broadcastable to x[..., 0, 0]).

  Returns [..., H, 2 Dh] = concat(x cos(p theta), x sin(p theta)).
  """
  ang = positions[..., None, None].astype(jnp.float32) * theta  # [..., 1, Dh]
  return jnp.concatenate([x * jnp.cos(ang), x * jnp.sin(ang)], axis=-1).astype(
      x.dtype)


def check_decay_slopes(slopes: tuple[float, ...] | None, num_heads: int) -> None:
  """None, or num_heads finite slopes >= 0; else ValueError naming the problem."""
  if slopes is None:
    return
  vals = tuple(float(v) for v in slopes)
  if len(vals) != num_heads:
    raise ValueError(f"decay_slopes needs one slope per head ({num_heads}), got {len(vals)}: {vals}")
  if any(not v >= 0 or v == float("inf") for v in vals):
    raise ValueError(f"decay_slopes must be finite and >= 0, got {vals}")


def check_qk_activation(name: str) -> None:
  """A known q/k feature map of LightningAttention; else ValueError naming it."""
  if name not in _ACTS:
    raise ValueError(f"unknown lightning qk_activation {name!r}; expected one of {sorted(_ACTS)}")


def check_lightning_options(mixer: str, use_lrpe: bool, qk_activation: str,
                            names: str = "use_lrpe / qk_activation") -> None:
  """The lightning-only options of a block or model: with mixer 'lightning' a known q/k feature map; with any
  other mixer their defaults (LRPE on, silu), since a value without effect is an error naming `names`."""
  if mixer == "lightning":
    check_qk_activation(qk_activation)
  elif not use_lrpe or qk_activation != "silu":
    raise ValueError(f"{names} apply to the lightning mixer only, not {mixer!r}")


class LightningAttention(nn.Module):
  """TransNormerLLM gated linear (lightning) attention. x [B,L,D] -> [B,L,D_out].

  Attributes:
    num_heads: H. head_dim: Dh. causal: causal decay, else symmetric.
    use_lrpe: LRPE relative positions (q, k head dim becomes 2 Dh).
    block_size: lightning block C. impl: 'jnp' (chunked jnp) or 'pallas'.
    decay_base: slopes s_h = 2^(-decay_base (h+1)/H).
    decay_slopes: explicit per-head slopes s_h >= 0 (H of them; decay exp(-s_h), 0 = no decay); overrides
      decay_base.
    lrpe_base: theta_d = lrpe_base^(-d / Dh).
    qk_activation: feature map of q and k ('silu': TransNormerLLM's; 'none': identity, i.e. plain decayed
      linear attention as in RetNet; also 'gelu', 'sigmoid').
    out_dim: output width (default H * Dh).
  """
  num_heads: int
  head_dim: int
  causal: bool = False
  use_lrpe: bool = True
  block_size: int = 64
  impl: str = "jnp"
  decay_base: float = 8.0
  decay_slopes: tuple[float, ...] | None = None
  lrpe_base: float = 10000.0
  qk_activation: str = "silu"
  out_dim: int | None = None
  dtype: Any = jnp.float32

  def setup(self):
    check_decay_slopes(self.decay_slopes, self.num_heads)
    check_qk_activation(self.qk_activation)
    if self.impl not in IMPLS:
      raise ValueError(f"unknown impl {self.impl!r}; expected one of {IMPLS}")
    if self.num_heads <= 0 or self.head_dim <= 0 or self.block_size <= 0:
      raise ValueError(f"num_heads, head_dim, block_size must be positive, "
                       f"got {self.num_heads}, {self.head_dim}, "
                       f"{self.block_size}")
    feats = (4, self.num_heads, self.head_dim)
    self.qkvu = nn.DenseGeneral(feats, dtype=self.dtype, name="qkvu")
    self.out = nn.DenseGeneral(self.out_dim or self.num_heads * self.head_dim,
                               axis=(-2, -1), dtype=self.dtype, name="out")
    self.norm = SRMSNorm()

  @property
  def slopes(self) -> jax.Array:
    if self.decay_slopes is not None:
      return jnp.asarray(self.decay_slopes, jnp.float32)
    return kref.decay_slopes(self.num_heads, self.decay_base)

  @property
  def qk_dim(self) -> int:
    return 2 * self.head_dim if self.use_lrpe else self.head_dim

  def _theta(self):
    d = jnp.arange(self.head_dim, dtype=jnp.float32)
    return self.lrpe_base ** (-d / self.head_dim)

  def _project(self, x, positions):
    """x [..., D] -> q, k [..., H, Dqk], v, u [..., H, Dh]."""
    p = self.qkvu(x)
    act = _ACTS[self.qk_activation]
    q, k = act(p[..., 0, :, :]), act(p[..., 1, :, :])
    v, u = p[..., 2, :, :], p[..., 3, :, :]
    if self.use_lrpe:
      theta = self._theta()
      q, k = lrpe(q, positions, theta), lrpe(k, positions, theta)
    return q, k, v, u

  def _output(self, o, u):
    """o, u [..., H, Dh] -> out(SRMSNorm(o over H*Dh) * u)."""
    shape = o.shape
    o = self.norm(o.reshape(*shape[:-2], -1)).reshape(shape)
    return self.out(o * u)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, D] -> [B, L, D_out]."""
    if x.ndim != 3:
      raise ValueError(f"LightningAttention expects x [B, L, D], got {x.shape}")
    q, k, v, u = self._project(x, jnp.arange(x.shape[1])[None, :])
    q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # [B, H, L, .]
    if self.impl == "pallas":
      o = lightning_attention(q, k, v, self.slopes, causal=self.causal,
                              block_size=self.block_size)
    else:
      o = kref.lightning_attention_chunked(q, k, v, self.slopes,
                                           causal=self.causal,
                                           block_size=self.block_size)
    return self._output(jnp.swapaxes(o, 1, 2), u)

  def init_state(self, batch: int) -> dict[str, jax.Array]:
    """Decode state: kv [B, H, Dqk, Dh] float32 zeros, pos int32 [B] zeros."""
    if batch <= 0:
      raise ValueError(f"batch must be positive, got {batch}")
    return {"kv": jnp.zeros((batch, self.num_heads, self.qk_dim,
                             self.head_dim), jnp.float32),
            "pos": jnp.zeros((batch,), jnp.int32)}

  def step(self, x: jax.Array, state: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Causal decode of one token: x [B, D] -> (y [B, D_out], new state)."""
    if not self.causal:
      raise ValueError("step() needs a causal LightningAttention")
    if x.ndim != 2:
      raise ValueError(f"step expects x [B, D], got {x.shape}")
    want = (x.shape[0], self.num_heads, self.qk_dim, self.head_dim)
    if state["kv"].shape != want:
      raise ValueError(f"state kv must be {want}, got {state['kv'].shape}")
    q, k, v, u = self._project(x, state["pos"])  # [B, H, .]
    if self.impl == "pallas":
      o, kv = linear_decode(q, k, v, state["kv"], self.slopes)
    else:
      o, kv = kref.linear_decode_step(q, k, v, state["kv"], self.slopes)
    return self._output(o, u), {"kv": kv, "pos": state["pos"] + 1}


class TransNormerBlock(nn.Module):
  """x + mixer(SRMSNorm(x)); then + GLU(SRMSNorm(.)). x [B, L, dim] -> same.

  Attributes:
    dim: model width (multiple of num_heads); head_dim = dim // num_heads.
    num_heads, mlp_ratio (GLU hidden = int(dim * mlp_ratio)), causal.
    mixer: 'lightning' or 'softmax'. impl: lightning 'jnp' / 'pallas' (also
      selects the softmax decode kernel). block_size, use_lrpe, qk_activation: lightning.
    glu_activation: see GLU. decay_slopes: lightning per-head slopes (see LightningAttention).
    num_kv_heads, softmax_project_kv: softmax mixer only: grouped-query KV heads and cross-layer
      attention (see mtl.nn.attention.SoftmaxAttention: num_kv_heads, project_kv).
  """
  dim: int
  num_heads: int
  mlp_ratio: float = 4.0
  causal: bool = False
  mixer: str = "lightning"
  impl: str = "jnp"
  block_size: int = 64
  use_lrpe: bool = True
  qk_activation: str = "silu"
  softmax_rope: bool = False
  glu_activation: str = "none"
  decay_slopes: tuple[float, ...] | None = None
  dtype: Any = jnp.float32
  num_kv_heads: int | None = None
  softmax_project_kv: bool = True

  def setup(self):
    if self.mixer not in MIXERS:
      raise ValueError(f"unknown mixer {self.mixer!r}; expected one of "
                       f"{MIXERS}")
    if self.mixer != "softmax" and (self.num_kv_heads is not None or not self.softmax_project_kv):
      raise ValueError(f"num_kv_heads / softmax_project_kv apply to the softmax mixer only, not {self.mixer!r}")
    if self.num_heads <= 0 or self.dim % self.num_heads:
      raise ValueError(f"dim {self.dim} must be a positive multiple of "
                       f"num_heads {self.num_heads}")
    hidden = int(self.dim * self.mlp_ratio)
    if hidden <= 0:
      raise ValueError(f"mlp_ratio {self.mlp_ratio} gives no GLU width")
    head_dim = self.dim // self.num_heads
    check_lightning_options(self.mixer, self.use_lrpe, self.qk_activation)
    if self.mixer == "lightning":
      self.token_mixer = LightningAttention(
          self.num_heads, head_dim, causal=self.causal,
          use_lrpe=self.use_lrpe, block_size=self.block_size, impl=self.impl,
          decay_slopes=self.decay_slopes, qk_activation=self.qk_activation, out_dim=self.dim,
          dtype=self.dtype, name="mixer")
    else:
      if self.decay_slopes is not None:
        raise ValueError("decay_slopes is a lightning-mixer option; the softmax mixer has no decay")
      self.token_mixer = SoftmaxAttention(
          self.num_heads, head_dim, causal=self.causal, out_dim=self.dim,
          decode_impl=self.impl, dtype=self.dtype, rope=self.softmax_rope,
          num_kv_heads=self.num_kv_heads, project_kv=self.softmax_project_kv, name="mixer")
    self.glu = GLU(hidden, out_dim=self.dim, activation=self.glu_activation,
                   dtype=self.dtype, name="glu")
    self.norm = SRMSNorm()

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 3 or x.shape[-1] != self.dim:
      raise ValueError(f"TransNormerBlock expects x [B, L, {self.dim}], got "
                       f"{x.shape}")
    x = x + self.token_mixer(self.norm(x))
    return x + self.glu(self.norm(x))

  def init_state(self, batch: int, max_len: int) -> dict[str, jax.Array]:
    """Decode state: lightning recurrent state, or a softmax KV cache."""
    head_dim = self.dim // self.num_heads
    if self.mixer == "softmax":
      return init_kv_cache(batch, max_len, self.num_kv_heads or self.num_heads, head_dim)
    qk = 2 * head_dim if self.use_lrpe else head_dim
    return {"kv": jnp.zeros((batch, self.num_heads, qk, head_dim),
                            jnp.float32),
            "pos": jnp.zeros((batch,), jnp.int32)}

  def step(self, x: jax.Array, state: dict[str, jax.Array]
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One causal decode step: x [B, dim] -> (y [B, dim], new state)."""
    if self.mixer == "softmax":
      h, state = self.token_mixer.decode_step(self.norm(x), state)
    else:
      h, state = self.token_mixer.step(self.norm(x), state)
    x = x + h
    return x + self.glu(self.norm(x)), state
