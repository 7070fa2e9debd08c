"""CAGrad, conflict-averse gradient descent (Liu et al. 2021).

  max_d min_i g_i . d  s.t. |d - g0| <= c |g0|,  g0 = mean gradient;  its dual:
  w = argmin_{w in simplex} g_w . g0 + c |g0| |g_w|,  d = g0 + (c |g0| / |g_w|) g_w,  g_w = sum_i w_i g_i.

`rescale` 1 divides d by 1 + c^2, 2 by 1 + c, 0 not at all (reference code default 1). c = 0 gives the mean
gradient. The dual is solved exactly (solvers.cagrad_weights: a monotone 1-D root over exact simplex QPs);
metrics 'solver/iters', 'solver/capped', 'solver/residual' (|log(|d - g0| / (c |g0|))| at the returned point).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("cagrad")
def cagrad(num_tasks: int, c: float = 0.4, rescale: int = 1, max_iter: int | None = None) -> Method:
  if c < 0:
    raise ValueError(f"cagrad c must be >= 0, got {c}")
  if rescale not in (0, 1, 2):
    raise ValueError(f"cagrad rescale must be 0, 1 or 2, got {rescale}")
  if max_iter is not None and max_iter < 1:
    raise ValueError(f"cagrad max_iter must be >= 1 (or None: 4 T + 10), got {max_iter}")
  div = {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[rescale]

  def fn(gram, losses, state, step):
    del losses, step
    if c == 0:
      weights = jnp.full((num_tasks,), 1.0 / num_tasks, gram.dtype)
      return weights, state, weight_metrics(weights)
    v, info = solvers.cagrad_weights(gram, c, max_iter)
    weights = v / div
    return weights, state, {**weight_metrics(weights), **info.metrics()}

  return Method("cagrad", num_tasks, "gramian", fn)
