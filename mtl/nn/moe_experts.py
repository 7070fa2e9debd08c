"""Expert computation for routed tokens: dense einsum dispatch (reference) and grouped `jax.lax.ragged_dot`.

Every expert is a two-layer MLP  y = act(x @ w1[e] + b1[e]) @ w2[e] + b2[e]  with
w1 [E, D, H], b1 [E, H], w2 [E, H, D_out], b2 [E, D_out].

Both implementations return sum_j weight[n, j] * expert_{index[n, j]}(x[n]) over the kept assignments, so
they agree up to float rounding. MAC counts of what each one runs are in `moe_layer_macs`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from mtl.nn.moe_routing import Routing


class ExpertParams(NamedTuple):
  w1: jnp.ndarray  # [E, D, H]
  b1: jnp.ndarray  # [E, H]
  w2: jnp.ndarray  # [E, H, D_out]
  b2: jnp.ndarray  # [E, D_out]


def check_expert_params(p: ExpertParams, d_model: int) -> None:
  e, d, h = p.w1.shape
  if d != d_model:
    raise ValueError(f"expert w1 expects input dim {d}, got tokens of dim {d_model}")
  if p.b1.shape != (e, h) or p.w2.shape[:2] != (e, h) or p.b2.shape != (e, p.w2.shape[2]):
    raise ValueError(f"inconsistent expert parameter shapes: w1 {p.w1.shape}, b1 {p.b1.shape}, "
                     f"w2 {p.w2.shape}, b2 {p.b2.shape}")


def dispatch_and_combine(routing: Routing, num_experts: int, capacity: int
                         ) -> tuple[jnp.ndarray, jnp.ndarray]:
  """One-hot dispatch [N, E, C] (1 where token n sits in slot c of expert e) and combine weights [N, E, C]."""
  slot = jax.nn.one_hot(jnp.where(routing.kept, routing.position, capacity), capacity, dtype=jnp.float32)
  expert = jax.nn.one_hot(routing.expert_index, num_experts, dtype=jnp.float32)  # [N, k, E]
  pair = expert[:, :, :, None] * slot[:, :, None, :]  # [N, k, E, C]; elementwise, no MACs
  dispatch = jnp.sum(pair, axis=1)
  combine = jnp.sum(pair * routing.weight.astype(jnp.float32)[:, :, None, None], axis=1)
  return dispatch, combine


def expert_mlp_buffers(xin: jnp.ndarray, p: ExpertParams, activation: Callable) -> jnp.ndarray:
  """Expert MLPs on per-expert buffers: xin [..., E, C, D] -> [..., E, C, D_out] (leading dims batched)."""
  h = activation(jnp.einsum("...ecd,edh->...ech", xin, p.w1) + p.b1[:, None, :])
  return jnp.einsum("...ech,eho->...eco", h, p.w2) + p.b2[:, None, :]


def experts_dense(x: jnp.ndarray, routing: Routing, p: ExpertParams, capacity: int,
                  activation: Callable = jax.nn.gelu) -> jnp.ndarray:
  """Reference: tokens x [N, D] -> [N, D_out] through capacity buffers built by einsum dispatch."""
  check_expert_params(p, x.shape[-1])
  dispatch, combine = dispatch_and_combine(routing, p.w1.shape[0], capacity)
  xin = jnp.einsum("nec,nd->ecd", dispatch.astype(x.dtype), x)
  y = expert_mlp_buffers(xin, p, activation)
  return jnp.einsum("nec,eco->no", combine.astype(y.dtype), y)


def experts_ragged(x: jnp.ndarray, routing: Routing, p: ExpertParams,
                   activation: Callable = jax.nn.gelu) -> jnp.ndarray:
  """Grouped matmul: tokens x [N, D] -> [N, D_out] with the N*k assignments sorted by expert.

  Kept assignments are grouped by expert and run through `jax.lax.ragged_dot`; dropped ones are sorted
  past the last group (ragged_dot leaves those rows at zero) and get combine weight 0.
  """
  check_expert_params(p, x.shape[-1])
  n, k = routing.expert_index.shape
  e = p.w1.shape[0]
  flat_expert = jnp.where(routing.kept, routing.expert_index, e).reshape(-1)  # [N*k]; e = dropped
  order = jnp.argsort(flat_expert, stable=True)
  sorted_expert = flat_expert[order]
  group_sizes = jnp.sum(jax.nn.one_hot(flat_expert, e, dtype=jnp.int32), axis=0)  # [E], dropped excluded
  bias_expert = jnp.minimum(sorted_expert, e - 1)
  xs = x[order // k]  # [N*k, D]
  h = jax.lax.ragged_dot(xs, p.w1.astype(x.dtype), group_sizes) + p.b1[bias_expert]
  h = activation(h)
  ys = jax.lax.ragged_dot(h, p.w2.astype(h.dtype), group_sizes) + p.b2[bias_expert]
  y = jnp.zeros_like(ys).at[order].set(ys).reshape(n, k, -1)
  return jnp.sum(y * routing.weight.astype(y.dtype)[:, :, None], axis=1)


def moe_layer_macs(num_tokens: int, d_model: int, hidden_dim: int, num_experts: int, top_k: int,
                   capacity: int, *, impl: str, num_groups: int = 1, d_out: int | None = None,
                   num_routed: int | None = None) -> dict[str, int]:
  """Multiply-accumulates of one MoE layer (biases, softmax and activations not counted).

  Args:
    num_tokens: tokens per group; there are `num_groups` groups.
    num_experts: experts the layer computes with (the router scores this many; after single-task pruning,
      the number of kept experts).
    capacity: slots per expert per group ('dense' impl).
    impl: 'dense' (einsum dispatch into E x C buffers), 'ragged' (grouped matmul over the routed rows) or
      'all' (every token through every expert, a dense mixture as in MMoE).
    num_routed: rows the grouped matmul runs per group ('ragged'); default N * k (no dropping).

  Returns: dict with 'router', 'dispatch' (einsum dispatch + combine), 'experts' and 'total' MACs.
  """
  d_out = d_model if d_out is None else d_out
  n, e = num_tokens, num_experts
  mlp = d_model * hidden_dim + hidden_dim * d_out  # MACs of one token through one expert
  router = n * d_model * e
  if impl == "dense":
    dispatch = n * e * capacity * d_model + n * e * capacity * d_out
    experts = e * capacity * mlp
  elif impl == "ragged":
    rows = n * top_k if num_routed is None else num_routed
    dispatch, experts = 0, rows * mlp
  elif impl == "all":
    dispatch, experts = 0, n * e * mlp
  else:
    raise ValueError(f"unknown MoE impl {impl!r}; expected 'dense', 'ragged' or 'all'")
  out = {"router": router, "dispatch": dispatch, "experts": experts}
  out = {k: v * num_groups for k, v in out.items()}
  out["total"] = sum(out.values())
  return out
