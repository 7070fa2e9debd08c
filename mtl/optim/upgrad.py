"""UPGrad (Quinton & Rey 2024, torchjd): project every task gradient onto the dual cone {x : G x >= 0} of all
task gradients and average. Each projection is G^T u_i with u_i = argmin_{u >= e_i} u^T M u, so the result
never conflicts with any task (g_j . d >= 0) and equals the mean gradient when no pair conflicts.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def upgrad_weights(gram: jnp.ndarray, sweeps: int = 100) -> jnp.ndarray:
  t = gram.shape[0]
  scale = jnp.trace(gram) / t + 1e-20  # the QP is scale-free; keep numbers O(1)
  u = solvers.nonneg_qp_rows(gram / scale, jnp.eye(t, dtype=gram.dtype), sweeps)
  return jnp.mean(u, axis=0)


@register("upgrad")
def upgrad(num_tasks: int, sweeps: int = 100) -> Method:
  if sweeps < 1:
    raise ValueError(f"upgrad sweeps must be >= 1, got {sweeps}")

  def fn(gram, losses, state, step):
    del losses, step
    w = upgrad_weights(gram, sweeps)
    return w, state, weight_metrics(w)

  return Method("upgrad", num_tasks, "gramian", fn)
