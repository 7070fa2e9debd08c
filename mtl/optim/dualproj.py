"""DualProj (torchjd; Lopez-Paz & Ranzato 2017, GEM eq. 11): project the preference-weighted average of the task
gradients onto the dual cone {x : G x >= 0}:

  d = argmin_{x : G x >= 0} |x - G^T p|^2 = G^T u,  u = argmin_{u >= p} u^T M u,  p = 1/T by default,

so d never conflicts with a task and equals the mean gradient when the mean conflicts with none. The QP is solved
exactly on the rescaled Gramian (solvers.project_dual_cone; torchjd adds a 1e-4 ridge instead). Metrics
'solver/iters', 'solver/capped', 'solver/residual'.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("dualproj")
def dualproj(num_tasks: int, pref=None, max_iter: int | None = None) -> Method:
  pref = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32) if pref is None else jnp.asarray(pref, jnp.float32)
  if pref.shape != (num_tasks,) or not bool(jnp.all(pref >= 0)) or not bool(jnp.any(pref > 0)):
    raise ValueError(f"dualproj pref must be {num_tasks} non-negative values (not all 0), got {pref}")

  def fn(gram, losses, state, step):
    del losses, step
    u, info = solvers.project_dual_cone(gram, pref[None, :], max_iter)
    w = u[0]
    return w, state, {**weight_metrics(w), **info.metrics()}

  return Method("dualproj", num_tasks, "gramian", fn)
