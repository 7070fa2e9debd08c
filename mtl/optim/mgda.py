"""MGDA (Sener & Koltun 2018): the minimum-norm point of the convex hull of the task gradients.

'mgda' solves on the parameter gradients; 'mgda_ub' (the paper's upper bound) solves on the gradients w.r.t.
the shared representation z (FeatureSplit route), then takes one backward pass of sum_i w_i L_i.
Weights lie on the simplex (sum to 1). `normalize` rescales each gradient before solving only (as in the
reference code): 'none', 'l2' (g_i / |g_i|), 'loss' (g_i / L_i), 'loss+' (g_i / (L_i |g_i|)).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _scales(gram, losses, normalize):
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-20))
  safe_l = jnp.maximum(losses, 1e-20)
  return {"none": jnp.ones_like(norms), "l2": norms, "loss": safe_l, "loss+": safe_l * norms}[normalize]


def _make(name: str, kind: str, num_tasks: int, normalize: str, iters: int) -> Method:
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"{name} normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
  if iters < 1:
    raise ValueError(f"{name} iters must be >= 1, got {iters}")

  def fn(gram, losses, state, step):
    del step
    s = _scales(gram, losses, normalize)
    w = solvers.min_norm_simplex(gram / (s[:, None] * s[None, :]), iters)
    return w, state, weight_metrics(w)

  return Method(name, num_tasks, kind, fn)


@register("mgda")
def mgda(num_tasks: int, normalize: str = "none", iters: int = 500) -> Method:
  """w = argmin_{w in simplex} |sum_i w_i g_i|^2 on the parameter gradients."""
  return _make("mgda", "gramian", num_tasks, normalize, iters)


@register("mgda_ub")
def mgda_ub(num_tasks: int, normalize: str = "none", iters: int = 500) -> Method:
  """MGDA-UB: the same problem on the gradients w.r.t. the shared representation (needs a FeatureSplit)."""
  return _make("mgda_ub", "features", num_tasks, normalize, iters)
