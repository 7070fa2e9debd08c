"""CAGrad, conflict-averse gradient descent (Liu et al. 2021).

d = g0 + (c |g0| / |g_w|) g_w, g0 = mean gradient, g_w = sum_i w_i g_i with
w = argmin_{simplex} g_w . g0 + c |g0| |g_w|. `rescale` 1 divides d by 1 + c^2, 2 by 1 + c, 0 not at all
(reference code default 1). c = 0 gives the mean gradient.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("cagrad")
def cagrad(num_tasks: int, c: float = 0.4, rescale: int = 1, iters: int = 500) -> Method:
  if c < 0:
    raise ValueError(f"cagrad c must be >= 0, got {c}")
  if rescale not in (0, 1, 2):
    raise ValueError(f"cagrad rescale must be 0, 1 or 2, got {rescale}")
  div = {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[rescale]

  def fn(gram, losses, state, step):
    del losses, step
    if c == 0:
      weights = jnp.full((num_tasks,), 1.0 / num_tasks, gram.dtype)
      return weights, state, weight_metrics(weights)
    g0_norm = jnp.sqrt(jnp.maximum(jnp.mean(gram), 0.0) + 1e-20)
    radius = c * g0_norm
    w = solvers.cagrad_inner(gram, radius, iters)
    gw_norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
    weights = (1.0 / num_tasks + radius / (gw_norm + 1e-12) * w) / div
    return weights, state, weight_metrics(weights)

  return Method("cagrad", num_tasks, "gramian", fn)
