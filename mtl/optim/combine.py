"""combine_gradients: per-task losses -> the combined gradient a multi-task method prescribes, under jit.

Cost per kind (T tasks):
  'loss'     : 1 forward + 1 backward (the weights come from the loss values; grad of sum_i w_i L_i).
  'gramian', 'grads': 1 forward + a T-way vmapped backward (jax.vjp + vmap over one-hot cotangents), i.e.
               jax.jacrev without re-running the forward pass.
  'features' : needs `task_loss_fn` to be a FeatureSplit: 1 encoder forward, T head backwards (vmapped) to get
               per-task gradients w.r.t. the shared representation z, then 1 head + 1 encoder backward of the
               weighted sum. The encoder is never differentiated T times (MGDA-UB, Sener & Koltun 2018).

FeatureSplit route: split the model into
  features_fn(params) -> z                      (shared encoder, any pytree of arrays, e.g. [B, D])
  head_loss_fn(params, z) -> (losses [T], aux)  (task heads + masked per-task losses)
Both receive the full params pytree; the result equals differentiating head_loss_fn(params, features_fn(params)).
A FeatureSplit can be passed for every method (non-feature methods just compose the two functions).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from mtl.optim import gramian as gramian_lib
from mtl.optim.base import Method


class FeatureSplit(NamedTuple):
  """A task loss function split at the shared representation (see module docstring)."""
  features_fn: Callable[[Any], Any]
  head_loss_fn: Callable[[Any, Any], tuple[jnp.ndarray, Any]]

  def __call__(self, params):
    return self.head_loss_fn(params, self.features_fn(params))


def _losses_vjp(task_loss_fn, params, num_tasks):
  losses, vjp_fn, aux = jax.vjp(task_loss_fn, params, has_aux=True)
  if not isinstance(losses, jax.Array) or losses.shape != (num_tasks,):
    raise ValueError(f"task_loss_fn must return (losses [{num_tasks}], aux); got losses with shape "
                     f"{getattr(losses, 'shape', type(losses))}")
  return losses, vjp_fn, aux


def per_task_grads(task_loss_fn: Callable, params: Any, num_tasks: int):
  """(losses [T], aux, grads with leading axis T on every leaf) from one forward and a vmapped backward."""
  losses, vjp_fn, aux = _losses_vjp(task_loss_fn, params, num_tasks)
  eye = jnp.eye(num_tasks, dtype=losses.dtype)
  (grads,) = jax.vmap(vjp_fn)(eye)
  return losses, aux, grads


def combine_gradients(method: Method, state: dict, task_loss_fn: Callable | FeatureSplit, params: Any,
                      step: jnp.ndarray) -> tuple[Any, dict, jnp.ndarray, Any, dict]:
  """The combined gradient of a multi-task objective.

  Args:
    method: from get_method.
    state: method state (method.init(params) or the previous call's new_state).
    task_loss_fn: params -> (losses [T] float32, aux), losses already mask-weighted means; or a FeatureSplit.
    params: model parameters.
    step: int32 scalar training step (seeds randomised methods).
  Returns:
    (grads like params, new_state, losses [T], aux, metrics dict[str, scalar]) with 'weight/<i>' task weights
    and, for gradient methods, 'cos/min' and 'grad_norm/<i>'.
  """
  t = method.num_tasks
  if method.kind == "loss":
    losses, vjp_fn, aux = _losses_vjp(task_loss_fn, params, t)
    w, new_state, metrics = method.weights_from_losses(losses, state, step)
    (grads,) = vjp_fn(w.astype(losses.dtype))
    return grads, new_state, losses, aux, metrics

  if method.kind == "features":
    if not isinstance(task_loss_fn, FeatureSplit):
      raise ValueError(f"method {method.name!r} needs the gradient w.r.t. the shared representation: pass "
                       "task_loss_fn as mtl.optim.FeatureSplit(features_fn, head_loss_fn)")
    z, enc_vjp = jax.vjp(task_loss_fn.features_fn, params)
    losses, head_vjp, aux = _head_vjp(task_loss_fn.head_loss_fn, params, z, t)
    eye = jnp.eye(t, dtype=losses.dtype)
    _, z_grads = jax.vmap(head_vjp)(eye)
    gram = gramian_lib.gramian(z_grads)
    w, new_state, metrics = method.weights_from_gramian(gram, losses, state, step)
    head_grads, z_cot = head_vjp(w.astype(losses.dtype))
    (enc_grads,) = enc_vjp(z_cot)
    grads = jax.tree_util.tree_map(jnp.add, head_grads, enc_grads)
    metrics = {**gramian_lib.conflict_metrics(gram), **metrics}
    return grads, new_state, losses, aux, metrics

  losses, aux, stacked = per_task_grads(task_loss_fn, params, t)
  if method.kind == "gramian":
    gram = gramian_lib.gramian(stacked)
    w, new_state, metrics = method.weights_from_gramian(gram, losses, state, step)
    grads = gramian_lib.weighted_sum(w, stacked)
    metrics = {**gramian_lib.conflict_metrics(gram), **metrics}
    return grads, new_state, losses, aux, metrics
  grads, new_state, metrics = method.combine_stacked(stacked, losses, state, step)
  return grads, new_state, losses, aux, metrics


def _head_vjp(head_loss_fn, params, z, num_tasks):
  losses, vjp_fn, aux = jax.vjp(head_loss_fn, params, z, has_aux=True)
  if losses.shape != (num_tasks,):
    raise ValueError(f"head_loss_fn must return (losses [{num_tasks}], aux); got losses with shape {losses.shape}")
  return losses, vjp_fn, aux
