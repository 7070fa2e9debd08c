"""GradDrop (Chen et al. 2020): per coordinate, keep only the task gradients of one sign, chosen at random
with probability set by the sign purity P = (1 + sum_i g_i / sum_i |g_i|) / 2:
  mask_i = [P > U and g_i > 0] or [P < U and g_i < 0],  U ~ Uniform(0, 1) per coordinate,
  result = sum_i (leak + (1 - leak) mask_i) g_i.
Applied to every parameter coordinate (the paper applies it at the shared activations).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim.base import Method, step_key
from mtl.optim.registry import register


def graddrop_leaf(g: jnp.ndarray, u: jnp.ndarray, leak: float) -> jnp.ndarray:
  """g [T, ...], u [...] uniform -> [...]."""
  g32 = g.astype(jnp.float32)
  purity = 0.5 * (1.0 + jnp.sum(g32, 0) / (jnp.sum(jnp.abs(g32), 0) + 1e-20))
  keep = ((purity > u)[None] & (g32 > 0)) | ((purity < u)[None] & (g32 < 0))
  return jnp.sum((leak + (1.0 - leak) * keep) * g32, 0).astype(g.dtype)


@register("graddrop")
def graddrop(num_tasks: int, leak: float = 0.0, seed: int = 0) -> Method:
  if not 0.0 <= leak <= 1.0:
    raise ValueError(f"graddrop leak must be in [0, 1], got {leak}")

  def fn(grads, losses, state, step):
    del losses
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    key = step_key(seed, step)
    out = [graddrop_leaf(g, jax.random.uniform(jax.random.fold_in(key, n), g.shape[1:]), leak)
           for n, g in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, out), state, {}

  return Method("graddrop", num_tasks, "grads", fn)
