"""Causal linear attention with a feature map (Based's 2nd-order Taylor map by default).

`LinearAttention(num_heads, feature_dim, head_dim)`: x [B, L, D] -> [B, L, D_out],
  q, k = x Wq, x Wk [.., H, F] (F = feature_dim, small: Based uses 16), v = x Wv [.., H, Dh],
  o_t = sum_{s<=t} phi(q_t).phi(k_s) v_s / (sum_{s<=t} phi(q_t).phi(k_s) + eps),   y = o Wo.
Training uses the parallel (quadratic) form with the closed-form kernel (mtl/nn/feature_maps.py), so the
1 + F + F^2 features are never materialised; decoding keeps the recurrent state
  S [B, H, F', Dh] = sum_s phi(k_s) v_s^T,  z [B, H, F'] = sum_s phi(k_s)   (F' = feature_size(F)),
whose size does not grow with the sequence: this is the state size Zoology plots recall against.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.nn import feature_maps


class LinearAttention(nn.Module):
  """Attributes: num_heads H, feature_dim F (q/k width per head), head_dim Dh (v width per head),
  feature_map (see feature_maps.FEATURE_MAPS), out_dim (default H * Dh), eps (normaliser floor)."""
  num_heads: int
  feature_dim: int
  head_dim: int
  feature_map: str = "taylor_exp"
  out_dim: int | None = None
  eps: float = 1e-6
  dtype: Any = jnp.float32

  def setup(self):
    for name in ("num_heads", "feature_dim", "head_dim"):
      if getattr(self, name) <= 0:
        raise ValueError(f"LinearAttention.{name} must be positive, got {getattr(self, name)}")
    feature_maps.feature_size(self.feature_map, self.feature_dim)  # validates the name
    self.qk = nn.DenseGeneral((2, self.num_heads, self.feature_dim), dtype=self.dtype, name="qk")
    self.v = nn.DenseGeneral((self.num_heads, self.head_dim), dtype=self.dtype, name="v")
    self.out = nn.DenseGeneral(self.out_dim or self.num_heads * self.head_dim, axis=(-2, -1), dtype=self.dtype,
                               name="out")

  @property
  def state_features(self) -> int:
    return feature_maps.feature_size(self.feature_map, self.feature_dim)

  def state_size(self) -> int:
    """Floats of recurrent state per sequence: H (F' Dh + F')."""
    return self.num_heads * self.state_features * (self.head_dim + 1)

  def _project(self, x):
    qk = self.qk(x)
    return qk[..., 0, :, :], qk[..., 1, :, :], self.v(x)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, D] -> [B, L, D_out] (causal)."""
    if x.ndim != 3:
      raise ValueError(f"LinearAttention expects x [B, L, D], got {x.shape}")
    q, k, v = self._project(x)
    a = feature_maps.kernel(self.feature_map, q, k, "bqhf,bkhf->bhqk")        # [B, H, L, L]
    length = x.shape[1]
    a = jnp.where(jnp.tril(jnp.ones((length, length), bool)), a, 0.0)
    o = jnp.einsum("bhqk,bkhd->bqhd", a, v.astype(jnp.float32))
    o = o / (jnp.swapaxes(a.sum(-1), 1, 2)[..., None] + self.eps)
    return self.out(o.astype(x.dtype))

  def init_state(self, batch: int) -> dict[str, jax.Array]:
    """Zero state: s [B, H, F', Dh], z [B, H, F'] float32."""
    if batch <= 0:
      raise ValueError(f"batch must be positive, got {batch}")
    f = self.state_features
    return {"s": jnp.zeros((batch, self.num_heads, f, self.head_dim), jnp.float32),
            "z": jnp.zeros((batch, self.num_heads, f), jnp.float32)}

  def step(self, x: jax.Array, state: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One token: x [B, D] -> (y [B, D_out], state with this token added)."""
    if x.ndim != 2:
      raise ValueError(f"LinearAttention.step expects x [B, D], got {x.shape}")
    want = (x.shape[0], self.num_heads, self.state_features, self.head_dim)
    if state["s"].shape != want:
      raise ValueError(f"state s must be {want}, got {state['s'].shape}")
    q, k, v = self._project(x)                                                  # [B, H, .]
    fq = feature_maps.feature_map(self.feature_map, q).astype(jnp.float32)
    fk = feature_maps.feature_map(self.feature_map, k).astype(jnp.float32)
    s = state["s"] + fk[..., :, None] * v.astype(jnp.float32)[..., None, :]
    z = state["z"] + fk
    o = jnp.einsum("bhf,bhfd->bhd", fq, s) / (jnp.einsum("bhf,bhf->bh", fq, z)[..., None] + self.eps)
    return self.out(o.astype(x.dtype)), {"s": s, "z": z}
