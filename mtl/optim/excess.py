"""ExcessMTL (He et al. 2024): weight tasks by their estimated excess risk, robust to label noise.

Per task, an AdaGrad-style diagonal preconditioner H_i = sqrt(sum_{s <= t} g_i(s)^2 + 1e-7) (state 'grad_sum',
task-stacked like the params) gives the excess-risk estimate e_i = g_i^T H_i^-1 g_i; the first step stores
e(0) (state 'initial'); afterwards the weights follow exponentiated-gradient ascent on the normalised estimates

  lambda_i <- lambda_i exp(eta e_i / e_i(0)),  lambda <- T lambda / sum(lambda),

and the update is sum_i lambda_i g_i with the new weights (as LibMTL's code). `step_size` = eta (LibMTL's
robust_step_size, default 1e-2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim import gramian as gramian_lib
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("excess_mtl")
def excess_mtl(num_tasks: int, step_size: float = 1e-2, eps: float = 1e-7) -> Method:
  if not step_size > 0:
    raise ValueError(f"excess_mtl step_size must be > 0, got {step_size}")

  def init_fn(params):
    return {"grad_sum": jax.tree_util.tree_map(
        lambda p: jnp.zeros((num_tasks,) + jnp.shape(p), jnp.float32), params),
        "initial": jnp.ones((num_tasks,), jnp.float32), "weights": jnp.ones((num_tasks,), jnp.float32),
        "seen": jnp.zeros((), jnp.int32)}

  def fn(grads, losses, state, step):
    del losses, step
    grad_sum = jax.tree_util.tree_map(lambda s, g: s + jnp.square(g.astype(jnp.float32)), state["grad_sum"], grads)

    def leaf_excess(s, g):
      g = g.astype(jnp.float32)
      return jnp.sum((g * g / jnp.sqrt(s + eps)).reshape(num_tasks, -1), axis=1)

    e = sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf_excess, grad_sum, grads)))
    first = state["seen"] == 0
    initial = jnp.where(first, e, state["initial"])
    lam = state["weights"] * jnp.exp(step_size * e / jnp.maximum(initial, 1e-30))
    lam = num_tasks * lam / jnp.sum(lam)
    lam = jnp.where(first, state["weights"], lam)
    new_state = {"grad_sum": grad_sum, "initial": initial, "weights": lam, "seen": state["seen"] + 1}
    return gramian_lib.weighted_sum(lam, grads), new_state, weight_metrics(lam)

  return Method("excess_mtl", num_tasks, "grads", fn, init_fn)
