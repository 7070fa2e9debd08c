"""DB-MTL, dual-balancing multi-task learning (Lin et al. 2023).

Loss-scale balancing: use grad log(L_i + eps) = grad L_i / (L_i + eps). Gradient-magnitude balancing: keep
an EMA buffer b_i <- g_i + (beta / n^beta_sigma)(b_i - g_i) (n = step + 1; state 'buffer', task-stacked like
the params) and return sum_i (max_j |b_j| / |b_i|) b_i.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim import gramian as gramian_lib
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("db_mtl")
def db_mtl(num_tasks: int, beta: float = 0.9, beta_sigma: float = 0.5, eps: float = 1e-8) -> Method:
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"db_mtl beta must be in [0, 1), got {beta}")

  def init_fn(params):
    return {"buffer": jax.tree_util.tree_map(
        lambda p: jnp.zeros((num_tasks,) + jnp.shape(p), jnp.result_type(p)), params)}

  def fn(grads, losses, state, step):
    log_grads = gramian_lib.scale_rows(1.0 / (losses + eps), grads)
    n = jnp.asarray(step, jnp.float32) + 1.0
    decay = beta / n ** beta_sigma
    buffer = jax.tree_util.tree_map(lambda g, b: (g + decay * (b - g)).astype(b.dtype), log_grads,
                                    state["buffer"])
    norms = jnp.sqrt(jnp.maximum(jnp.diag(gramian_lib.gramian(buffer)), 0.0))
    alpha = jnp.max(norms) / (norms + eps)
    return gramian_lib.weighted_sum(alpha, buffer), {"buffer": buffer}, weight_metrics(alpha)

  return Method("db_mtl", num_tasks, "grads", fn, init_fn)
