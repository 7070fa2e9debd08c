"""Nash-MTL (Navon et al. 2022) and FairGrad (Ban & Ji 2024): weights w > 0 with (G G^T w)_i = w_i^(-1/alpha).

alpha = 1 is the Nash bargaining solution G G^T w = 1/w (then |sum_i w_i g_i|^2 = T). Nash-MTL's reference
code solves on M / |M|_F (`normalize=True`), which makes the step scale with the gradients, and optionally
clips the combined gradient's norm (`max_norm`, 0 = off). FairGrad uses M as is by default.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def _make(name, num_tasks, alpha, normalize, max_norm, iters):
  if alpha <= 0:
    raise ValueError(f"{name} alpha must be > 0, got {alpha}")
  if max_norm < 0:
    raise ValueError(f"{name} max_norm must be >= 0, got {max_norm}")

  def fn(gram, losses, state, step):
    del losses, step
    scale = jnp.sqrt(jnp.sum(gram ** 2)) + 1e-20 if normalize else 1.0
    w = solvers.power_fixed_point(gram / scale, alpha, iters)
    if max_norm > 0:
      norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
      w = w * jnp.minimum(1.0, max_norm / (norm + 1e-12))
    return w, state, weight_metrics(w)

  return Method(name, num_tasks, "gramian", fn)


@register("nash_mtl")
def nash_mtl(num_tasks: int, normalize: bool = True, max_norm: float = 0.0, iters: int = 50) -> Method:
  return _make("nash_mtl", num_tasks, 1.0, normalize, max_norm, iters)


@register("fairgrad")
def fairgrad(num_tasks: int, alpha: float = 1.0, normalize: bool = False, max_norm: float = 0.0,
             iters: int = 50) -> Method:
  return _make("fairgrad", num_tasks, float(alpha), normalize, max_norm, iters)
