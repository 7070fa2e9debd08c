"""Token routing for mixture-of-experts layers: top-k choice with expert capacity, and the router losses.

Shapes: N tokens (one routing group), E experts, k choices per token, C slots per expert (capacity).

Priority: all first choices are placed before any second choice (GShard / Switch order); within one choice
rank, earlier tokens come first. An assignment whose slot index reaches the capacity is dropped: its
combine weight is 0 and the token gets no contribution from that expert (the caller's residual carries it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Routing(NamedTuple):
  """Where each token goes.

  expert_index: int32 [..., N, k] chosen experts (distinct per token), best first.
  weight: float32 [..., N, k] combine weights; 0 where the assignment was dropped.
  position: int32 [..., N, k] slot of the assignment in its expert's buffer (may be >= capacity when dropped).
  kept: bool [..., N, k] whether the assignment fits in the expert's capacity.
  probs: float32 [..., N, E] router softmax probabilities.
  """
  expert_index: jnp.ndarray
  weight: jnp.ndarray
  position: jnp.ndarray
  kept: jnp.ndarray
  probs: jnp.ndarray


def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
  """Slots per expert: ceil(capacity_factor * N * k / E), clipped to [1, N]; capacity_factor <= 0 gives N.

  N slots can never overflow (a token picks an expert at most once), so `capacity_factor <= 0` is dropless.
  """
  if num_tokens < 1 or num_experts < 1 or top_k < 1:
    raise ValueError(f"expert_capacity: num_tokens, num_experts, top_k must be >= 1, got "
                     f"{num_tokens}, {num_experts}, {top_k}")
  if capacity_factor <= 0:
    return num_tokens
  return max(1, min(num_tokens, math.ceil(capacity_factor * num_tokens * top_k / num_experts)))


def top_k_routing(logits: jnp.ndarray, top_k: int, capacity: int, *, renormalize: bool = True) -> Routing:
  """Top-k routing of one group of tokens with a per-expert capacity.

  Args:
    logits: [N, E] router logits (any float dtype; the softmax runs in float32).
    top_k: choices per token, 1 <= top_k <= E.
    capacity: slots per expert (see `expert_capacity`).
    renormalize: rescale the k chosen probabilities to sum to 1 (before dropping).
  """
  if logits.ndim != 2:
    raise ValueError(f"top_k_routing expects logits [N, E], got shape {logits.shape}")
  n, e = logits.shape
  if not 1 <= top_k <= e:
    raise ValueError(f"top_k must be in [1, num_experts={e}], got {top_k}")
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  weight, index = jax.lax.top_k(probs, top_k)  # [N, k]
  if renormalize and top_k > 1:
    weight = weight / jnp.sum(weight, axis=-1, keepdims=True)
  # Choice-major order: [k, N, E] -> running count per expert.
  onehot = jax.nn.one_hot(index.T, e, dtype=jnp.int32)  # [k, N, E]
  counts = jnp.cumsum(onehot.reshape(top_k * n, e), axis=0).reshape(top_k, n, e)
  position = (jnp.sum(counts * onehot, axis=-1) - 1).T  # [N, k]
  kept = position < capacity
  weight = jnp.where(kept, weight, 0.0)
  return Routing(index.astype(jnp.int32), weight, position.astype(jnp.int32), kept, probs)


def group_routing(logits: jnp.ndarray, top_k: int, capacity: int, *, renormalize: bool = True) -> Routing:
  """`top_k_routing` applied to each group of logits [G, N, E] independently (GShard groups)."""
  if logits.ndim != 3:
    raise ValueError(f"group_routing expects logits [G, N, E], got shape {logits.shape}")
  return jax.vmap(lambda l: top_k_routing(l, top_k, capacity, renormalize=renormalize))(logits)


def expert_load(expert_index: jnp.ndarray, num_experts: int) -> jnp.ndarray:
  """float32 [E]: fraction of all routing assignments (before dropping) that go to each expert; sums to 1."""
  onehot = jax.nn.one_hot(expert_index.reshape(-1), num_experts, dtype=jnp.float32)
  return jnp.mean(onehot, axis=0)


def load_balancing_loss(probs: jnp.ndarray, expert_index: jnp.ndarray) -> jnp.ndarray:
  """Switch-Transformer auxiliary loss E * sum_e f_e * P_e (1.0 when perfectly balanced).

  Args:
    probs: [..., N, E] router probabilities; P_e is their mean over tokens.
    expert_index: [..., N, k] chosen experts; f_e is the fraction of assignments to expert e.
  """
  e = probs.shape[-1]
  p = jnp.mean(probs.reshape(-1, e).astype(jnp.float32), axis=0)
  return e * jnp.sum(expert_load(expert_index, e) * p)


def router_z_loss(logits: jnp.ndarray) -> jnp.ndarray:
  """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2; logits [..., E]."""
  z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(z * z)


def drop_fraction(kept: jnp.ndarray) -> jnp.ndarray:
  """Fraction of routing assignments dropped for lack of capacity; kept [..., N, k] bool."""
  return jnp.mean(jnp.logical_not(kept).astype(jnp.float32))
