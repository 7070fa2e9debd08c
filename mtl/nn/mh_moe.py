"""Multi-Head Mixture-of-Experts (MH-MoE, Wu et al. 2024): route sub-tokens instead of tokens.

Each token x [D] is projected by a multi-head layer (Dense D -> D), split into `num_heads` sub-tokens of
D / h dims, and the B * L * h sub-tokens are routed by a `MoEMLP` (top-k, capacity, groups, aux losses and
metrics all as there) whose experts work on D / h dims; the processed sub-tokens are put back in their token's
order and a merge layer (Dense D -> D) mixes them. One token thus reaches up to h * k distinct experts.

Drop-in for `MoEMLP`: same attributes (plus `num_heads`), same call `(x, *, task_id, train, active_experts)`,
x [B, D] or [B, L, D] -> same shape (last dim out_dim or D). `num_groups` splits the sub-tokens of the batch
(whole tokens stay in one group when B * L divides by it).

MACs per token (biases, softmax, activations not counted), E experts of hidden H, top-k, without drops:
  MoEMLP:   D E (router) + 2 k D H (experts)
  MH-MoE:   2 D^2 (multi-head + merge layers) + D E (router: h sub-tokens x D/h x E) + 2 k D H (experts)
so an MH-MoE with expert hidden `equal_macs_hidden(D, H, k)` = H - D / k costs what an MoEMLP of hidden H does.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mtl.nn.moe import MoEFields, MoEMLP


def equal_macs_hidden(d_model: int, hidden_dim: int, top_k: int) -> int:
  """Expert hidden width of an MH-MoE layer with the MACs of an MoEMLP of `hidden_dim`: H - D / k (exact when
  k divides D); raises when that leaves no width."""
  if d_model % top_k:
    raise ValueError(f"equal MACs need top_k ({top_k}) to divide d_model ({d_model})")
  h = hidden_dim - d_model // top_k
  if h < 1:
    raise ValueError(f"an MoEMLP of hidden {hidden_dim} is too narrow to pay for MH-MoE's two {d_model}x{d_model} "
                     f"projections at top_k={top_k}")
  return h


def mh_moe_layer_macs(num_tokens: int, d_model: int, hidden_dim: int, num_experts: int, top_k: int,
                      num_heads: int) -> dict[str, int]:
  """MACs of one MH-MoE layer on `num_tokens` tokens with grouped-matmul experts and no drops."""
  sub = d_model // num_heads
  n_sub = num_tokens * num_heads
  out = {"projections": 2 * num_tokens * d_model * d_model, "router": n_sub * sub * num_experts,
         "experts": n_sub * top_k * 2 * sub * hidden_dim}
  out["total"] = sum(out.values())
  return out


class MultiHeadMoE(MoEFields):
  """MH-MoE layer; see the module docstring. Attributes as `MoEMLP` (`MoEFields`), plus `num_heads` (h, divides
  D)."""
  num_heads: int = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, task_id: int | None = None, train: bool = False,
               active_experts: Sequence[int] | None = None) -> jnp.ndarray:
    if x.ndim not in (2, 3):
      raise ValueError(f"MultiHeadMoE expects x [B, D] or [B, L, D], got shape {x.shape}")
    d, h = x.shape[-1], self.num_heads
    if h < 1 or d % h:
      raise ValueError(f"MultiHeadMoE: num_heads ({h}) must be >= 1 and divide the model dim ({d})")
    out_dim = self.out_dim or d
    tokens = nn.Dense(d, name="multi_head")(x).reshape(-1, h, d // h)  # [N, h, D/h]: a token's sub-tokens
    moe = MoEMLP(**{**self.moe_fields(), "out_dim": None}, name="experts")
    y = moe(tokens.reshape(-1, d // h), task_id=task_id, train=train, active_experts=active_experts)
    y = nn.Dense(out_dim, name="merge")(y.reshape(-1, d))
    return y.reshape(x.shape[:-1] + (out_dim,))
