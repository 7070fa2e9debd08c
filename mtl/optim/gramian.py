"""Linear algebra on task-stacked gradient pytrees (every leaf [T, ...]) without flattening the model.

Working leaf by leaf keeps parameter shardings intact (no concatenation of sharded arrays).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def check_stacked(tree: Any, num_tasks: int, what: str) -> None:
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    raise ValueError(f"{what} is an empty pytree")
  for leaf in leaves:
    if leaf.ndim < 1 or leaf.shape[0] != num_tasks:
      raise ValueError(f"{what}: every leaf needs a leading task axis of size {num_tasks}, got shape {leaf.shape}")


def gram_dtype() -> jnp.dtype:
  """float64 when jax x64 is enabled (the Gramian and every T x T solve), else float32."""
  return jnp.dtype(jnp.float64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.float32)


def gramian(stacked: Any) -> jnp.ndarray:
  """M[i, j] = <g_i, g_j> summed over all leaves, [T, T] in gram_dtype() (float64 under jax x64)."""
  leaves = jax.tree_util.tree_leaves(stacked)
  total = 0.0
  dt = gram_dtype()
  for leaf in leaves:
    flat = leaf.reshape(leaf.shape[0], -1).astype(dt)
    total = total + jnp.einsum("td,sd->ts", flat, flat, precision=jax.lax.Precision.HIGHEST)
  return total


def weighted_sum(w: jnp.ndarray, stacked: Any) -> Any:
  """sum_i w_i g_i for every leaf: [T, ...] -> [...], accumulated in gram_dtype(), returned in each leaf's dtype."""
  dt = gram_dtype()

  def one(leaf):
    out = jnp.tensordot(w.astype(dt), leaf.astype(dt), axes=1, precision=jax.lax.Precision.HIGHEST)
    return out.astype(leaf.dtype)
  return jax.tree_util.tree_map(one, stacked)


def scale_rows(s: jnp.ndarray, stacked: Any) -> Any:
  """g_i -> s_i g_i for every leaf."""
  return jax.tree_util.tree_map(
      lambda leaf: (leaf * s.reshape((-1,) + (1,) * (leaf.ndim - 1)).astype(leaf.dtype)), stacked)


def cosine_matrix(gram: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """Pairwise cosine similarities [T, T] from the Gramian."""
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  return gram / jnp.maximum(norms[:, None] * norms[None, :], eps)


def conflict_metrics(gram: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """'cos/min': smallest pairwise cosine (< 0 means conflicting tasks); 'grad_norm/<i>': per-task norms."""
  t = gram.shape[0]
  out = {f"grad_norm/{i}": jnp.sqrt(jnp.maximum(gram[i, i], 0.0)) for i in range(t)}
  if t > 1:
    cos = cosine_matrix(gram)
    out["cos/min"] = jnp.min(jnp.where(jnp.eye(t, dtype=bool), jnp.inf, cos))
  return out
