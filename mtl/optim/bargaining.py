"""Nash-MTL (Navon et al. 2022) and FairGrad (Ban & Ji 2024): weights a > 0 with

  (G G^T a)_i = a_i^(-1/alpha),  d = G^T a.

alpha = 1 is the Nash bargaining solution G G^T a = 1/a; then |d|^2 = a^T M a = sum_i a_i / a_i = T whatever
the scale of the gradients (the paper's step). `step_scale='reference_code'` reproduces Navon et al.'s code,
which solves on M / |M|_F and so returns sqrt(|M|_F) times the paper's a (|d|^2 = T |M|_F). The fixed point
is solved on the cosine matrix (no ridge that could swamp a small task) by Newton steps until the residual
max_i |(M a)_i a_i^(1/alpha) - 1| is below tolerance; metrics 'solver/iters', 'solver/capped' (1 if
`max_iter` was hit first), 'solver/residual'. A task with a zero gradient gets weight 0 (no a_i solves its
equation). `max_norm` > 0 clips |d| (0 = off).
"""
from __future__ import annotations

import jax.numpy as jnp

from mtl.optim import solvers
from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register

STEP_SCALES = ("paper", "reference_code")


def _make(name, num_tasks, alpha, step_scale, max_norm, max_iter):
  if alpha <= 0:
    raise ValueError(f"{name} alpha must be > 0, got {alpha}")
  if max_norm < 0:
    raise ValueError(f"{name} max_norm must be >= 0, got {max_norm}")
  if step_scale not in STEP_SCALES:
    raise ValueError(f"{name} step_scale must be one of {STEP_SCALES}, got {step_scale!r}")
  if max_iter < 1:
    raise ValueError(f"{name} max_iter must be >= 1, got {max_iter}")
  p = 1.0 / alpha

  def fn(gram, losses, state, step):
    del losses, step
    w, info = solvers.bargaining(gram, alpha, max_iter)
    if step_scale == "reference_code":
      # a' solving (M / f) a' = a'^-p is a' = f^(1 / (1 + p)) a
      w = w * jnp.sqrt(jnp.sum(gram ** 2)) ** (1.0 / (1.0 + p))
    if max_norm > 0:
      norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
      w = w * jnp.minimum(1.0, max_norm / (norm + 1e-12))
    return w, state, {**weight_metrics(w), **info.metrics()}

  return Method(name, num_tasks, "gramian", fn)


@register("nash_mtl")
def nash_mtl(num_tasks: int, step_scale: str = "paper", max_norm: float = 0.0, max_iter: int = 100) -> Method:
  return _make("nash_mtl", num_tasks, 1.0, step_scale, max_norm, max_iter)


@register("fairgrad")
def fairgrad(num_tasks: int, alpha: float = 1.0, max_norm: float = 0.0, max_iter: int = 100) -> Method:
  """FairGrad solves M a = a^(-1/alpha) on M as is (as its reference code does: no normalisation)."""
  return _make("fairgrad", num_tasks, float(alpha), "paper", max_norm, max_iter)
