"""Sequential pairwise gradient surgery: PCGrad (Yu et al. 2020) and GradVac (Wang et al. 2021).

Every surgered gradient g_i' stays a linear combination sum_k C_ik g_k of the task gradients, so all inner
products come from the Gramian (g_i' . g_j = (C M)_ij) and the combined gradient is sum_i g_i' = (1^T C) G:
the work is O(T^3) on a T x T matrix, never on the model size. The order of the other tasks is random per
task and per step (seeded), as in the papers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.optim.base import Method, step_key, weight_metrics
from mtl.optim.registry import register


def _orders(seed, step, num_tasks):
  keys = jax.random.split(step_key(seed, step), num_tasks)
  return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(keys)  # [T, T]


def pcgrad_coefficients(gram: jnp.ndarray, orders: jnp.ndarray) -> jnp.ndarray:
  """C [T, T] with g_i' = sum_k C_ik g_k: for j in orders[i], if g_i' . g_j < 0, g_i' -= (g_i'.g_j/|g_j|^2) g_j."""
  t = gram.shape[0]
  rows = jnp.arange(t)

  def body(k, c):
    j = orders[:, k]
    dots = (c @ gram)[rows, j]
    coef = jnp.where(dots < 0, dots / jnp.maximum(gram[j, j], 1e-20), 0.0)
    return c.at[rows, j].add(-coef)

  return jax.lax.fori_loop(0, t, body, jnp.eye(t, dtype=gram.dtype))


@register("pcgrad")
def pcgrad(num_tasks: int, seed: int = 0) -> Method:
  """PCGrad: project each task gradient off the conflicting others (random order); sum the results."""
  def fn(gram, losses, state, step):
    del losses
    c = pcgrad_coefficients(gram, _orders(seed, step, num_tasks))
    w = jnp.sum(c, axis=0)
    return w, state, weight_metrics(w)
  return Method("pcgrad", num_tasks, "gramian", fn)


def gradvac_coefficients(gram, orders, targets, beta):
  """(C, new targets): for j != i in orders[i], phi = cos(g_i', g_j); if phi < target_ij, add
  g_j |g_i'| (t sqrt(1-phi^2) - phi sqrt(1-t^2)) / (|g_j| sqrt(1-t^2)) to g_i'; target_ij <- EMA(beta) of phi."""
  t = gram.shape[0]
  rows = jnp.arange(t)
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 1e-20))

  def body(k, carry):
    c, tgt = carry
    j = orders[:, k]
    valid = j != rows
    ni = jnp.sqrt(jnp.maximum(jnp.einsum("ik,kl,il->i", c, gram, c), 1e-20))
    phi = (c @ gram)[rows, j] / (ni * norms[j])
    phi = jnp.clip(phi, -1.0, 1.0)
    target = tgt[rows, j]
    coef = ni * (target * jnp.sqrt(1 - phi ** 2) - phi * jnp.sqrt(1 - target ** 2)) / (
        norms[j] * jnp.sqrt(jnp.maximum(1 - target ** 2, 1e-12)))
    coef = jnp.where(valid & (phi < target), coef, 0.0)
    c = c.at[rows, j].add(coef)
    tgt = tgt.at[rows, j].set(jnp.where(valid, (1 - beta) * target + beta * phi, target))
    return c, tgt

  return jax.lax.fori_loop(0, t, body, (jnp.eye(t, dtype=gram.dtype), targets))


@register("gradvac")
def gradvac(num_tasks: int, beta: float = 0.5, seed: int = 0) -> Method:
  """Gradient Vaccine: raise each pair's cosine to an EMA target (state 'targets' [T, T], init 0)."""
  if not 0.0 < beta <= 1.0:
    raise ValueError(f"gradvac beta must be in (0, 1], got {beta}")

  def init_fn(params):
    del params
    return {"targets": jnp.zeros((num_tasks, num_tasks), jnp.float32)}

  def fn(gram, losses, state, step):
    del losses
    c, targets = gradvac_coefficients(gram, _orders(seed, step, num_tasks), state["targets"], beta)
    w = jnp.sum(c, axis=0)
    return w, {"targets": targets}, weight_metrics(w)

  return Method("gradvac", num_tasks, "gramian", fn, init_fn)
