"""Aligned-MTL (Senushkin et al. 2023): align the task gradients' principal components.

M = V diag(l) V^T; on the numerical range (l > tol), B = sqrt(l_min) V diag(l^-1/2) V^T makes the aligned
gradients B G orthogonal with equal norms sqrt(l_min); the combined gradient is sum_i (B G)_i = (B 1)^T G.
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


def aligned_matrix(gram: jnp.ndarray) -> jnp.ndarray:
  t = gram.shape[0]
  lam, v = jnp.linalg.eigh(gram)
  tol = jnp.max(lam) * t * jnp.finfo(gram.dtype).eps * 10.0
  keep = lam > tol
  lam_min = jnp.min(jnp.where(keep, lam, jnp.inf))
  lam_min = jnp.where(jnp.isfinite(lam_min), lam_min, 0.0)
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, lam, 1.0)), 0.0)
  return jnp.sqrt(lam_min) * (v * inv_sqrt[None, :]) @ v.T


@register("aligned_mtl")
def aligned_mtl(num_tasks: int) -> Method:
  def fn(gram, losses, state, step):
    del losses, step
    w = jnp.sum(aligned_matrix(gram), axis=0)
    return w, state, weight_metrics(w)
  return Method("aligned_mtl", num_tasks, "gramian", fn)
