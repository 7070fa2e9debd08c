"""IMTL-G, impartial gradient weighting (Liu et al. 2021): the combined gradient g = sum_i a_i g_i, sum a = 1,
has equal projections g . u_i on every unit task gradient u_i = g_i / |g_i|.

With Q = M diag(1/|g|) (Q_ij = g_i . u_j) and E = [e_1 - e_k]_{k=2..T}:
a_{2:T}^T = (e_1^T Q E^T)(E Q E^T)^{-1}, a_1 = 1 - sum a_{2:T}.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def imtl_weights(gram: jnp.ndarray) -> jnp.ndarray:
  t = gram.shape[0]
  if t == 1:
    return jnp.ones((1,), gram.dtype)
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-20))
  q = gram / norms[None, :]
  e = jnp.concatenate([jnp.ones((t - 1, 1), gram.dtype), -jnp.eye(t - 1, dtype=gram.dtype)], axis=1)
  a = e @ q @ e.T
  b = q[0] @ e.T
  rest = jnp.linalg.solve(a.T, b)
  return jnp.concatenate([1.0 - jnp.sum(rest, keepdims=True), rest])


@register("imtl_g")
def imtl_g(num_tasks: int) -> Method:
  def fn(gram, losses, state, step):
    del losses, step
    w = imtl_weights(gram)
    return w, state, weight_metrics(w)
  return Method("imtl_g", num_tasks, "gramian", fn)
