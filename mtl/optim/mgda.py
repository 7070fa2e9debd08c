"""MGDA (Sener & Koltun 2018): the minimum-norm point of the convex hull of the task gradients.

  w = argmin_{w in simplex} |sum_i w_i g_i|^2,  d = sum_i w_i g_i,  and then g_i . d >= |d|^2 for every i.

'mgda' solves on the parameter gradients; 'mgda_ub' (the paper's upper bound) solves on the gradients w.r.t.
the shared representation z (FeatureSplit route), then takes one backward pass of sum_i w_i L_i.
Weights lie on the simplex (sum to 1). `normalize` rescales each gradient before solving only (as in the
reference code): 'none', 'l2' (g_i / |g_i|), 'loss' (g_i / L_i), 'loss+' (g_i / (L_i |g_i|)).
The QP is solved exactly by an active-set method on the diagonally rescaled Gramian (solvers.min_norm_simplex);
metrics 'solver/iters', 'solver/capped' (1 if `max_iter` was hit) and 'solver/residual' (scale-free KKT
residual) report it. A task with a zero gradient makes the minimum norm 0 (d = 0, weight on the zero rows).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _scales(gram, losses, normalize):
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), jnp.finfo(gram.dtype).tiny))
  safe_l = jnp.maximum(losses.astype(gram.dtype), jnp.finfo(gram.dtype).tiny)
  return {"none": jnp.ones_like(norms), "l2": norms, "loss": safe_l, "loss+": safe_l * norms}[normalize]


def _make(name: str, kind: str, num_tasks: int, normalize: str, max_iter: int | None) -> Method:
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"{name} normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
  if max_iter is not None and max_iter < 1:
    raise ValueError(f"{name} max_iter must be >= 1 (or None: 4 T + 10), got {max_iter}")

  def fn(gram, losses, state, step):
    del step
    s = _scales(gram, losses, normalize)
    w, info = solvers.min_norm_simplex(gram / (s[:, None] * s[None, :]), max_iter)
    return w, state, {**weight_metrics(w), **info.metrics()}

  return Method(name, num_tasks, kind, fn)


@register("mgda")
def mgda(num_tasks: int, normalize: str = "none", max_iter: int | None = None) -> Method:
  """w = argmin_{w in simplex} |sum_i w_i g_i|^2 on the parameter gradients."""
  return _make("mgda", "gramian", num_tasks, normalize, max_iter)


@register("mgda_ub")
def mgda_ub(num_tasks: int, normalize: str = "none", max_iter: int | None = None) -> Method:
  """MGDA-UB: the same problem on the gradients w.r.t. the shared representation (needs a FeatureSplit)."""
  return _make("mgda_ub", "features", num_tasks, normalize, max_iter)
