"""The multi-task method object: one of four kinds, each an optax transformation on task-stacked gradients.

Kinds (what the method needs to compute its combination):
  'loss':     task weights w [T] from the loss vector only; combined gradient = sum_i w_i g_i. The training
              step takes ONE backward pass of the weighted loss sum (no per-task gradients).
  'gramian':  task weights w [T] from the Gramian M = G G^T [T, T] of the per-task gradients G (and the losses);
              combined gradient = sum_i w_i g_i. Per-task gradients come from one vmapped backward pass.
  'grads':    a general map from the task-stacked gradients to the combined gradient (per-coordinate methods
              such as GradDrop, or methods with gradient buffers such as DB-MTL).
  'features': task weights from the Gramian of the per-task gradients w.r.t. the shared representation
              (MGDA-UB); combined gradient = gradient of sum_i w_i L_i (one backward pass).

Every method's state is a dict of arrays with an int32 'count' (number of updates taken) and goes into
checkpoints. Randomised methods draw their randomness from fold_in(PRNGKey(seed), step), so a resumed run is
exact.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from mtl.optim import gramian as gramian_lib

KINDS = ("loss", "gramian", "grads", "features")

# (losses [T], state, step) -> (weights [T], state, metrics)
LossWeightFn = Callable[[jnp.ndarray, dict, jnp.ndarray], tuple[jnp.ndarray, dict, dict]]
# (gram [T, T], losses [T], state, step) -> (weights [T], state, metrics)
GramWeightFn = Callable[[jnp.ndarray, jnp.ndarray, dict, jnp.ndarray], tuple[jnp.ndarray, dict, dict]]
# (stacked grads pytree, losses [T], state, step) -> (combined pytree, state, metrics)
GradsFn = Callable[[Any, jnp.ndarray, dict, jnp.ndarray], tuple[Any, dict, dict]]


def _no_state(params: Any) -> dict:
  del params
  return {}


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
  """A multi-task loss-weighting / gradient-aggregation method.

  Attributes:
    name: registry name.
    num_tasks: T.
    kind: one of KINDS (see module docstring).
    fn: the method's core function; its signature depends on `kind` (LossWeightFn, GramWeightFn, GradsFn;
      'features' uses GramWeightFn on the feature-gradient Gramian).
    init_fn: params -> method-specific state (dict of arrays, without 'count').
  """
  name: str
  num_tasks: int
  kind: str
  fn: Callable
  init_fn: Callable[[Any], dict] = _no_state

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
    if int(self.num_tasks) < 1:
      raise ValueError(f"method {self.name!r}: num_tasks must be >= 1, got {self.num_tasks}")

  def init(self, params: Any) -> dict:
    """State for `params` (unstacked model parameters): {'count': int32 0, ...method state}."""
    state = dict(self.init_fn(params))
    state["count"] = jnp.zeros((), jnp.int32)
    return state

  def check_losses(self, losses: jnp.ndarray) -> None:
    if losses.shape != (self.num_tasks,):
      raise ValueError(f"method {self.name!r}: task losses must have shape ({self.num_tasks},), got {losses.shape}")

  def weights_from_losses(self, losses, state, step):
    """'loss' kind: (weights [T], new state, metrics)."""
    w, new_state, metrics = self.fn(jax.lax.stop_gradient(losses), _inner(state), step)
    return w, _outer(new_state, state), metrics

  def weights_from_gramian(self, gram, losses, state, step):
    """'gramian' / 'features' kind: (weights [T], new state, metrics)."""
    w, new_state, metrics = self.fn(gram, jax.lax.stop_gradient(losses), _inner(state), step)
    return w, _outer(new_state, state), metrics

  def combine_stacked(self, grads, losses, state, step, features_grads=None):
    """Task-stacked grads (leading axis T on every leaf) -> (combined grads, new state, metrics)."""
    self.check_losses(losses)
    gramian_lib.check_stacked(grads, self.num_tasks, "grads")
    if self.kind == "loss":
      w, state, metrics = self.weights_from_losses(losses, state, step)
      return gramian_lib.weighted_sum(w, grads), state, metrics
    if self.kind == "gramian":
      w, state, metrics = self.weights_from_gramian(gramian_lib.gramian(grads), losses, state, step)
      return gramian_lib.weighted_sum(w, grads), state, metrics
    if self.kind == "features":
      if features_grads is None:
        raise ValueError(f"method {self.name!r} needs `features_grads` (per-task gradients w.r.t. the shared "
                         "representation, leading axis T)")
      gramian_lib.check_stacked(features_grads, self.num_tasks, "features_grads")
      w, state, metrics = self.weights_from_gramian(gramian_lib.gramian(features_grads), losses, state, step)
      return gramian_lib.weighted_sum(w, grads), state, metrics
    combined, new_state, metrics = self.fn(grads, jax.lax.stop_gradient(losses), _inner(state), step)
    return combined, _outer(new_state, state), metrics

  def update(self, updates, state, params=None, *, task_losses, step=None, features_grads=None, **extra_args):
    """optax update: task-stacked `updates` -> (combined updates, new state). `step` defaults to the count."""
    del params, extra_args
    step = state["count"] if step is None else step
    combined, state, _ = self.combine_stacked(updates, jnp.asarray(task_losses, jnp.float32), state, step,
                                              features_grads)
    return combined, state

  @property
  def tx(self) -> optax.GradientTransformationExtraArgs:
    """The method as an optax transformation; chain it before any optimizer: optax.chain(m.tx, optax.adam(..))."""
    return optax.GradientTransformationExtraArgs(self.init, self.update)


def _inner(state: dict) -> dict:
  return {k: v for k, v in state.items() if k != "count"}


def _outer(new_inner: dict, old: dict) -> dict:
  out = dict(new_inner)
  out["count"] = old["count"] + 1
  return out


def weight_metrics(w: jnp.ndarray) -> dict[str, jnp.ndarray]:
  return {f"weight/{i}": w[i] for i in range(w.shape[0])}


def step_key(seed: int, step: jnp.ndarray) -> jax.Array:
  """PRNG key of a randomised method at `step` (deterministic, so resuming is exact)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), jnp.asarray(step, jnp.int32))
