"""Gated short convolution (Zoology/Based `BaseConv` with a short kernel), a causal token mixer.

`GatedShortConv(dim, kernel_size)`: u [B, L, D] -> conv(u) * (u W + b) [B, L, D], where conv is a causal
depthwise convolution of width K: conv(u)_t = sum_{j<K} w_j * u_{t-j} + c (u_{<0} = 0). Used as a residual
sub-layer (x + GatedShortConv(norm(x))), alone or before any attention mixer (Zoology's `Hybrid`): it lets the
next mixer see the previous token, which associative recall needs (a query key must find the token after the
same key in the context). Decode state: the last K-1 inputs [B, K-1, D]; its size is fixed.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class GatedShortConv(nn.Module):
  """Attributes: dim D, kernel_size K >= 1 (K = 1 is a gated per-channel scale)."""
  dim: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  def setup(self):
    if self.dim <= 0 or self.kernel_size < 1:
      raise ValueError(f"GatedShortConv needs dim > 0 and kernel_size >= 1, got {self.dim}, {self.kernel_size}")
    k = self.kernel_size
    # w[j] multiplies u_{t-j}; initialised like a depthwise conv (fan-in K).
    self.weight = self.param("kernel", nn.initializers.variance_scaling(1.0, "fan_in", "uniform",
                                                                        in_axis=0, out_axis=1), (k, self.dim))
    self.bias = self.param("bias", nn.initializers.zeros, (self.dim,))
    self.proj = nn.Dense(self.dim, dtype=self.dtype, name="proj")

  def _check(self, x, ndim):
    if x.ndim != ndim or x.shape[-1] != self.dim:
      raise ValueError(f"GatedShortConv expects x of rank {ndim} ending in {self.dim}, got {x.shape}")

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, D] -> [B, L, D] (causal)."""
    self._check(x, 3)
    length = x.shape[1]
    pad = jnp.pad(x, ((0, 0), (self.kernel_size - 1, 0), (0, 0)))
    conv = sum(self.weight[j].astype(x.dtype) * pad[:, self.kernel_size - 1 - j:self.kernel_size - 1 - j + length]
               for j in range(self.kernel_size)) + self.bias.astype(x.dtype)
    return conv * self.proj(x)

  def init_state(self, batch: int) -> jax.Array:
    """Zero history [B, K-1, D] (float32)."""
    if batch <= 0:
      raise ValueError(f"batch must be positive, got {batch}")
    return jnp.zeros((batch, self.kernel_size - 1, self.dim), jnp.float32)

  def step(self, x: jax.Array, history: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One token: x [B, D], history [B, K-1, D] (oldest first) -> (y [B, D], new history)."""
    self._check(x, 2)
    window = jnp.concatenate([history.astype(x.dtype), x[:, None]], 1)         # [B, K, D], u_{t-K+1} .. u_t
    conv = jnp.einsum("bkd,kd->bd", window, self.weight[::-1].astype(x.dtype)) + self.bias.astype(x.dtype)
    return conv * self.proj(x), window[:, 1:].astype(history.dtype)
