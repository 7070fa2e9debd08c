"""Loss-weighting methods: task weights from the loss values only (one backward pass of sum_i w_i L_i).

Weight scale: 'equal' uses w_i = 1 (the plain sum of task losses); methods that define a distribution over
tasks (FAMO) keep their papers' scale, documented per method.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mtl.optim.base import Method, step_key, weight_metrics
from mtl.optim.registry import register


@register("equal")
def equal(num_tasks: int) -> Method:
  """w_i = 1: the gradient of sum_i L_i."""
  def fn(losses, state, step):
    del step
    w = jnp.ones_like(losses)
    return w, state, weight_metrics(w)
  return Method("equal", num_tasks, "loss", fn)
