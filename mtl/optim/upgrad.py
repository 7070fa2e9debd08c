"""UPGrad (Quinton & Rey 2024, torchjd): project every task gradient onto the dual cone {x : G x >= 0} of all
task gradients and average:

  d = (1/T) sum_i G^T u_i,  u_i = argmin_{u >= e_i} u^T M u,

so d never conflicts with any task (G d >= 0) and equals the mean gradient when no pair conflicts. Each
projection is an exact NNLS-type QP on the rescaled Gramian (solvers.project_dual_cone); metrics
'solver/iters' (max over the T problems), 'solver/capped', 'solver/residual'.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def upgrad_weights(gram: jnp.ndarray, max_iter: int | None = None) -> tuple[jnp.ndarray, solvers.SolveInfo]:
  """Weights w [T] (d = G^T w) and the solver info."""
  t = gram.shape[0]
  u, info = solvers.project_dual_cone(gram, jnp.eye(t, dtype=gram.dtype), max_iter)
  return jnp.mean(u, axis=0), info


@register("upgrad")
def upgrad(num_tasks: int, max_iter: int | None = None) -> Method:
  if max_iter is not None and max_iter < 1:
    raise ValueError(f"upgrad max_iter must be >= 1 (or None: 4 T + 10), got {max_iter}")

  def fn(gram, losses, state, step):
    del losses, step
    w, info = upgrad_weights(gram, max_iter)
    return w, state, {**weight_metrics(w), **info.metrics()}

  return Method("upgrad", num_tasks, "gramian", fn)
