"""IMTL-G, impartial gradient weighting (Liu et al. 2021): the combined gradient d = sum_i a_i g_i, sum a = 1,
has equal projections d . u_i on every unit task gradient u_i = g_i / |g_i|.

With a = beta / s (s = |g|, so d = sum_i beta_i u_i) and the cosine matrix C = U U^T the conditions read
C beta = kappa 1, i.e. beta = C^+ 1 (`solvers.cosine_solve`: a Cholesky solve unless C is numerically singular)
normalised so that sum_i beta_i / s_i = 1: the paper's closed form
a_{2:T}^T = (g_1^T U^T)(D U^T)^{-1} written on the unit-diagonal C, which keeps small tasks and near-parallel
gradients accurate in float32. A task with a zero gradient (no labels in the batch) has no direction: it gets
weight 0 and the condition holds on the other tasks (all zero: uniform weights, d = 0).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def imtl_weights(gram: jnp.ndarray) -> jnp.ndarray:
  t = gram.shape[0]
  if t == 1:
    return jnp.ones((1,), gram.dtype)
  c, s, zero = solvers.rescale(gram)
  keep = ~zero
  beta = solvers.cosine_solve(c, keep.astype(gram.dtype), keep)
  a = beta / s
  total = jnp.sum(a)
  ok = jnp.any(keep) & (jnp.abs(total) > 0)
  return jnp.where(ok, a / jnp.where(ok, total, 1.0), jnp.full((t,), 1.0 / t, gram.dtype))


@register("imtl_g")
def imtl_g(num_tasks: int) -> Method:
  def fn(gram, losses, state, step):
    del losses, step
    w = imtl_weights(gram)
    return w, state, weight_metrics(w)
  return Method("imtl_g", num_tasks, "gramian", fn)
