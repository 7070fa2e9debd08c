"""MoCo (Fernando et al. 2023): MGDA with tracked gradients, which removes the bias of stochastic MGDA.

With per-task gradients scaled as in the reference code, h_i = L_i g_i / |g_i| (`normalize=True`),

  y_i <- y_i - beta_t (y_i - h_i),       beta_t = beta / t^beta_sigma
  lambda <- Proj_simplex(lambda - gamma_t (Y Y^T + rho I) lambda),   gamma_t = gamma / t^gamma_sigma
  d = Y^T lambda,

t = step + 1 (per training step, as in LibMTL's code). State: 'y' (task-stacked like the params, T x model size)
and 'lambda' [T] (init 1/T). `lambda_update='projection'` (default) is the paper's Proj_simplex;
`'softmax'` is LibMTL's code, lambda <- softmax(lambda - gamma_t (Y Y^T + rho I) lambda), which keeps every
weight in (0, 1) (the projection can put a task's weight at exactly 0 when gamma_t |Y Y^T| is large).

Regime note (docs/mtl_optim.md, experiments/probe_moco.py): with beta_sigma = 0.5 the tracked Y averages the
gradients of the last ~sqrt(t) / beta steps (35 at step 300); on MultiFashion at 300 steps this trains far slower
than equal weighting with Adam (lr 3e-4 to 3e-3) and momentum SGD, is within 1-2.5 points of it at Adam 1e-4, and
beta=1, beta_sigma=0 (no tracking) is close to equal weighting at 3e-3.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim import gramian as gramian_lib
from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


LAMBDA_UPDATES = ("projection", "softmax")


@register("moco")
def moco(num_tasks: int, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
         rho: float = 0.0, normalize: bool = True, lambda_update: str = "projection") -> Method:
  if not 0 < beta <= 1:
    raise ValueError(f"moco beta must be in (0, 1], got {beta}")
  if not gamma > 0 or rho < 0:
    raise ValueError(f"moco needs gamma > 0 and rho >= 0, got gamma={gamma}, rho={rho}")
  if lambda_update not in LAMBDA_UPDATES:
    raise ValueError(f"moco lambda_update must be one of {LAMBDA_UPDATES}, got {lambda_update!r}")
  lambda_map = solvers.project_simplex if lambda_update == "projection" else jax.nn.softmax

  def init_fn(params):
    return {"y": jax.tree_util.tree_map(lambda p: jnp.zeros((num_tasks,) + jnp.shape(p), jnp.float32), params),
            "lambda": jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)}

  def fn(grads, losses, state, step):
    t = jnp.asarray(step, jnp.float32) + 1.0
    if normalize:
      norms = jnp.sqrt(jnp.maximum(jnp.diag(gramian_lib.gramian(grads)), 0.0))
      grads = gramian_lib.scale_rows((losses / (norms + 1e-8)).astype(jnp.float32), grads)
    b = beta / t ** beta_sigma
    y = jax.tree_util.tree_map(lambda yi, g: yi - b * (yi - g.astype(jnp.float32)), state["y"], grads)
    yy = gramian_lib.gramian(y).astype(jnp.float32)
    lam = state["lambda"]
    lam = lambda_map(lam - gamma / t ** gamma_sigma * ((yy + rho * jnp.eye(num_tasks)) @ lam))
    combined = jax.tree_util.tree_map(lambda c, g: c.astype(g.dtype), gramian_lib.weighted_sum(lam, y), grads)
    return combined, {"y": y, "lambda": lam}, weight_metrics(lam)

  return Method("moco", num_tasks, "grads", fn, init_fn)
