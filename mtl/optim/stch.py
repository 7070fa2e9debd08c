"""STCH, smooth Tchebycheff scalarisation (Lin et al. 2024), as in its multi-task code (LibMTL):

  L_STCH = T mu log sum_i exp(log(L_i / z_i) / mu),   z = nadir point: mean task losses over the warm-up,
  w_i = dL_STCH / dL_i = T softmax(log(L / z) / mu)_i / L_i.

During the first `warmup_steps` steps the objective is sum_i log L_i (w_i = 1 / L_i) and z accumulates the mean of
the losses (state 'nadir_sum', 'seen'); LibMTL counts warm-up in epochs, here in steps. mu -> 0 approaches the
Tchebycheff max_i log(L_i / z_i); large mu approaches the mean of the log-ratios (times T).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("stch")
def stch(num_tasks: int, mu: float = 1.0, warmup_steps: int = 100, eps: float = 1e-20) -> Method:
  if not mu > 0:
    raise ValueError(f"stch mu must be > 0, got {mu}")
  if warmup_steps < 1:
    raise ValueError(f"stch warmup_steps must be >= 1 (the nadir point is their mean loss), got {warmup_steps}")

  def init_fn(params):
    del params
    return {"nadir_sum": jnp.zeros((num_tasks,), jnp.float32), "seen": jnp.zeros((), jnp.int32)}

  def fn(losses, state, step):
    del step
    safe = jnp.maximum(losses, eps)
    warm = state["seen"] < warmup_steps
    nadir = state["nadir_sum"] / jnp.maximum(state["seen"], 1).astype(jnp.float32)
    soft = jax.nn.softmax(jnp.log(safe / jnp.maximum(nadir, eps)) / mu)
    w = jnp.where(warm, 1.0 / safe, num_tasks * soft / safe)
    new_state = {"nadir_sum": jnp.where(warm, state["nadir_sum"] + losses, state["nadir_sum"]),
                 "seen": jnp.minimum(state["seen"] + 1, warmup_steps)}
    return w, new_state, {**weight_metrics(w), "stch/warmup": warm.astype(jnp.float32)}

  return Method("stch", num_tasks, "loss", fn, init_fn)
