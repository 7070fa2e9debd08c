"""Aligned-MTL (Senushkin et al. 2023): align the task gradients' principal components.

M = V diag(l) V^T; on the numerical range (l > tol), B = sqrt(l_min) V diag(l^-1/2) V^T makes the aligned
gradients B G orthogonal with equal norms sqrt(l_min); the combined gradient is sum_i (B G)_i = (B 1)^T G.

Numerics: M's eigenvalues are the squares of the singular values of a square root K of M, so the numerical
rank is decided on sigma = sqrt(l) (sigma > T eps sigma_max * 10), not on l: in float32 a task whose gradient
is 1e-4 of the largest (l ~ 1e-8 l_max) is kept. K = S V_C diag(l_C)^1/2 comes from the eigendecomposition of
the cosine matrix C = S^-1 M S^-1 (S = diag |g_i|), so its columns carry each task's own scale.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def aligned_matrix(gram: jnp.ndarray) -> jnp.ndarray:
  """B [T, T] (see module docstring)."""
  t = gram.shape[0]
  c, s, zero = solvers.rescale(gram)
  lc, vc = jnp.linalg.eigh(c)
  k = (jnp.where(zero, 0.0, s)[:, None] * vc) * jnp.sqrt(jnp.maximum(lc, 0.0))[None, :]
  u, sig, _ = jnp.linalg.svd(k)
  tol = jnp.max(sig) * t * solvers.eps(gram.dtype) * 10.0
  keep = sig > tol
  sig_min = jnp.min(jnp.where(keep, sig, jnp.inf))
  sig_min = jnp.where(jnp.isfinite(sig_min), sig_min, 0.0)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, sig, 1.0), 0.0)
  return sig_min * (u * inv[None, :]) @ u.T


@register("aligned_mtl")
def aligned_mtl(num_tasks: int) -> Method:
  def fn(gram, losses, state, step):
    del losses, step
    w = jnp.sum(aligned_matrix(gram), axis=0)
    return w, state, weight_metrics(w)
  return Method("aligned_mtl", num_tasks, "gramian", fn)
