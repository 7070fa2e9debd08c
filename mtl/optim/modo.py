"""MoDo, multi-objective gradient with double sampling (Chen, Fernando et al. 2023):

  lambda <- Proj_simplex(lambda - gamma (G_1 G_2^T lambda + rho lambda)),   d = G_3^T lambda,

where G_1, G_2, G_3 are per-task gradients on independent batches. This implementation has one batch per step, so
G_1 = G_2 = G_3 = G (the Gramian M = G G^T of that batch); the double-sampling unbiasedness of the paper's lambda
update does not hold, the update rule does. State 'lambda' [T] (init 1/T); defaults from LibMTL.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("modo")
def modo(num_tasks: int, gamma: float = 1e-3, rho: float = 0.1) -> Method:
  if not gamma > 0 or rho < 0:
    raise ValueError(f"modo needs gamma > 0 and rho >= 0, got gamma={gamma}, rho={rho}")

  def init_fn(params):
    del params
    return {"lambda": jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)}

  def fn(gram, losses, state, step):
    del losses, step
    lam = state["lambda"].astype(gram.dtype)
    lam = solvers.project_simplex(lam - gamma * (gram @ lam + rho * lam))
    return lam, {"lambda": lam.astype(jnp.float32)}, weight_metrics(lam)

  return Method("modo", num_tasks, "gramian", fn, init_fn)
