"""SDMGrad, stochastic direction-oriented multi-objective gradient (Xiao et al. 2023):

  w <- argmin_{w in simplex} 0.5 |G^T w + lambda g0|^2 approximately, by `niter` projected SGD steps (lr 5,
       momentum 0.5, as the reference code) on the Gramian normalised by the squared mean gradient norm,
       gradient M_n w + lambda M_n 1 / T, warm-started from the previous step's w (state 'w', init 1/T);
  d = (G^T w + lambda g0) / (1 + lambda),   g0 = mean gradient.

The paper samples the two gradients of M = G_1 G_2^T (and the one of d) on independent batches; here one batch
gives all three (the update rule holds, the double-sampling unbiasedness does not). lambda -> infinity gives the
mean gradient, lambda = 0 stochastic MGDA.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("sdmgrad")
def sdmgrad(num_tasks: int, lamda: float = 0.3, niter: int = 20, lr: float = 5.0, momentum: float = 0.5) -> Method:
  if lamda < 0 or niter < 1 or not lr > 0 or not 0 <= momentum < 1:
    raise ValueError(f"sdmgrad needs lamda >= 0, niter >= 1, lr > 0, 0 <= momentum < 1; got {lamda}, {niter}, "
                     f"{lr}, {momentum}")

  def init_fn(params):
    del params
    return {"w": jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)}

  def fn(gram, losses, state, step):
    del losses, step
    scale = jnp.mean(jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0)))
    gn = gram / (scale ** 2 + 1e-8)
    gg = jnp.mean(gn, axis=1)

    def body(_, carry):
      w, buf = carry
      buf = momentum * buf + gn @ w + lamda * gg
      return solvers.project_simplex(w - lr * buf), buf

    w0 = state["w"].astype(gram.dtype)
    w, _ = jax.lax.fori_loop(0, niter, body, (w0, jnp.zeros_like(w0)))
    weights = (w + lamda / num_tasks) / (1.0 + lamda)
    return weights, {"w": w.astype(jnp.float32)}, weight_metrics(weights)

  return Method("sdmgrad", num_tasks, "gramian", fn, init_fn)
