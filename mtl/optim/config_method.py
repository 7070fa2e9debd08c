"""ConFIG, conflict-free inverse gradients (Liu, Chu & Thuerey 2024, eq. 2):

  u_i = g_i / |g_i|,  v = U^+ p,  v_hat = v / |v|,  d = (sum_i g_i . v_hat) v_hat,

so d has the same cosine with every task gradient (U v = p with p = 1 by default) and its length is the sum of
the gradients' projections on it. In Gramian terms v = U^T C^+ p (C = U U^T, the cosine matrix), so d = G^T w
with w = beta (1^T M beta) / (beta^T M beta), beta = (C^+ p) / s. Rows with a zero gradient have no unit vector
(torchjd/ConFIG's nan_to_num gives them u_i = 0): they get weight 0. `pref`: one value per task (default 1).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def config_weights(gram: jnp.ndarray, pref: jnp.ndarray) -> jnp.ndarray:
  c, s, zero = solvers.rescale(gram)
  p = jnp.where(zero, 0.0, pref.astype(gram.dtype))
  beta = solvers.cosine_solve(c, p, ~zero) / s
  mb = gram @ beta
  den = beta @ mb
  return jnp.where(den > 0, beta * jnp.sum(mb) / jnp.where(den > 0, den, 1.0), 0.0)


@register("config")
def config(num_tasks: int, pref=None) -> Method:
  pref = jnp.ones((num_tasks,), jnp.float32) if pref is None else jnp.asarray(pref, jnp.float32)
  if pref.shape != (num_tasks,) or not bool(jnp.all(pref > 0)):
    raise ValueError(f"config pref must be {num_tasks} positive values, got {pref}")

  def fn(gram, losses, state, step):
    del losses, step
    w = config_weights(gram, pref)
    return w, state, weight_metrics(w)

  return Method("config", num_tasks, "gramian", fn)
