"""Train and eval steps of a multi-task model, and the pieces every train-step variant shares.

A variant (registered in `mtl.train.registry.TRAIN_STEPS`) builds its loss from `forward` and
`task_losses_and_stats`, returns a `StepOutput` as the aux of its loss function, and ends with `finish_step`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mtl import tasks as tasks_lib
from mtl.optim import FeatureSplit, combine_gradients
from mtl.tasks.base import TaskSpec
from mtl.train.registry import TRAIN_STEPS
from mtl.train.state import TrainState

MUTABLE_TRAIN = ("aux_loss", "metrics", "batch_stats")


@dataclasses.dataclass(frozen=True)
class ScheduledStep:
  """A train step whose static structure changes with the step number (e.g. which sub-networks it trains).

  `key_for_step(step)` (host-side, deterministic, 1-based step) names the variant; `build(key)` returns that
  variant's unjitted `step(state, batch) -> (state, metrics)`. The loop compiles each variant once, when first
  needed, with the same shardings, and runs the one of each step.
  """
  key_for_step: Callable[[int], Hashable]
  build: Callable[[Hashable], Callable]


def sum_sown(tree: Any) -> jnp.ndarray:
  """Sum of every leaf of a sown collection (sow appends to tuples), a float32 scalar."""
  leaves = jax.tree_util.tree_leaves(tree)
  return sum((jnp.sum(x).astype(jnp.float32) for x in leaves), jnp.zeros((), jnp.float32))


def flatten_sown(tree: Any, prefix: str) -> dict[str, jnp.ndarray]:
  """'metrics' collection -> flat dict 'prefix/<path>' -> mean over sow calls."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    values = leaf if isinstance(leaf, tuple) else (leaf,)
    out[f"{prefix}/{name}"] = sum(jnp.asarray(v, jnp.float32) for v in values) / len(values)
  return out


def task_losses_and_stats(outputs: Mapping[str, jnp.ndarray], batch: Mapping[str, jnp.ndarray],
                          tasks: tuple[TaskSpec, ...]) -> tuple[jnp.ndarray, dict[str, dict]]:
  """Per-task losses [T] (in `tasks` order) and per-task summable stats."""
  losses, stats = [], {}
  for t in tasks:
    kind = tasks_lib.get_kind(t.kind)
    target = batch[t.target_key]
    mask = batch.get(t.mask_key)
    losses.append(kind.loss(outputs[t.name], target, mask))
    stats[t.name] = kind.stats(jax.lax.stop_gradient(outputs[t.name]), target, mask)
  return jnp.stack(losses), stats


class StepOutput(NamedTuple):
  """What a variant's loss function returns beside its loss vector, for `finish_step`.

  Attributes:
    stats: task name -> summable stats of the logged predictions (e.g. the full model's).
    mutated: model collections mutated by the logged forward pass ('batch_stats' is kept in the state,
      'metrics' is logged).
    task_losses: [T] per-task losses logged as 'loss/<task>' (without auxiliary terms).
    aux_loss: float32 scalar, every auxiliary loss sown into 'aux_loss' and included in the objective.
    metrics: extra scalars to log.
  """
  stats: dict
  mutated: dict
  task_losses: jax.Array
  aux_loss: jax.Array
  metrics: dict


def forward(model: nn.Module, params: Any, model_state: Any, x: jax.Array, rng: jax.Array, **kwargs: Any
            ) -> tuple[Any, dict, jax.Array]:
  """Training-mode forward pass: (outputs, mutated collections, summed sown 'aux_loss' as a float32 scalar)."""
  outputs, mutated = model.apply({"params": params, **model_state}, x, train=True, rngs={"dropout": rng},
                                 mutable=list(MUTABLE_TRAIN), **kwargs)
  return outputs, mutated, sum_sown(mutated.get("aux_loss", {}))


def finish_step(tx: optax.GradientTransformation, method: Any, tasks: tuple[TaskSpec, ...], state: TrainState,
                loss_fn: Callable | FeatureSplit) -> tuple[TrainState, dict]:
  """The update tail every train-step variant shares: the multi-task method's combined gradient of
  `loss_fn(params) -> ([T] losses, StepOutput)` (`mtl.optim.combine_gradients`), the optimizer update, batch
  statistics and metrics.

  The sum of the [T] loss vector the method combined is logged as 'objective', beside 'loss' (the logged task
  losses plus the logged auxiliary loss). Returns (new state, {'scalars': metrics, 'stats': out.stats}).
  """
  grads, mtl_state, objective, out, mtl_metrics = combine_gradients(method, state.mtl_state, loss_fn, state.params,
                                                                    state.step)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  model_state = dict(state.model_state)
  if "batch_stats" in out.mutated:
    model_state["batch_stats"] = out.mutated["batch_stats"]
  new_state = state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state,
                            mtl_state=mtl_state)
  metrics = {"loss": jnp.sum(out.task_losses) + out.aux_loss, "aux_loss": out.aux_loss,
             "objective": jnp.sum(objective),
             "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params)}
  metrics.update({f"loss/{t.name}": out.task_losses[i] for i, t in enumerate(tasks)})
  metrics.update(flatten_sown(out.mutated.get("metrics", {}), "model"))
  metrics.update({f"mtl/{k}": v for k, v in mtl_metrics.items()})
  metrics.update(out.metrics)
  return new_state, {"scalars": metrics, "stats": out.stats}


def make_train_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                    method: Any, input_key: str) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns `step(state, batch) -> (state, metrics)` (not yet jitted; the loop jits it).

  The per-task loss vector goes to the multi-task `method` (mtl.optim), whose combined gradient feeds `tx`.
  Auxiliary losses sown by the model ('aux_loss') are spread evenly over the task losses so every method sees
  them.
  """
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    dropout_rng, _ = jax.random.split(jax.random.fold_in(state.rng, state.step))

    def task_loss_fn(params):
      outputs, mutated, aux = forward(model, params, state.model_state, batch[input_key], dropout_rng)
      losses, stats = task_losses_and_stats(outputs, batch, tasks)
      return losses + aux / num_tasks, StepOutput(stats, mutated, losses, aux, {})

    loss_fn = task_loss_fn
    if getattr(method, "kind", None) == "features":
      loss_fn = _feature_split(model, state, batch[input_key], batch, tasks, dropout_rng)
    return finish_step(tx, method, tasks, state, loss_fn)

  return step


TRAIN_STEPS.register("standard", lambda exp: make_train_step(exp.model, exp.tasks, exp.tx, exp.method,
                                                              exp.info.input_key))


def _feature_split(model, state, x, batch, tasks, rng) -> FeatureSplit:
  """Task losses split at the shared features (for methods such as MGDA-UB); needs `encode` / `decode`.

  Auxiliary losses sown by the encoder are not part of this route; use a loss or gradient method for MoE
  encoders.
  """
  if not (hasattr(model, "encode") and hasattr(model, "decode")):
    raise ValueError(f"{type(model).__name__} has no encode/decode split, so feature-level methods "
                     "(e.g. mgda_ub) cannot run on it; pick a gradient method such as mgda")
  variables = lambda p: {"params": p, **state.model_state}

  def features_fn(params):
    return model.apply(variables(params), x, train=True, rngs={"dropout": rng}, method="encode")

  def head_loss_fn(params, z):
    outputs = model.apply(variables(params), z, train=True, rngs={"dropout": rng}, method="decode")
    losses, stats = task_losses_and_stats(outputs, batch, tasks)
    return losses, StepOutput(stats, {}, losses, jnp.zeros((), jnp.float32), {})

  return FeatureSplit(features_fn, head_loss_fn)


def make_eval_step(model: nn.Module, tasks: tuple[TaskSpec, ...], input_key: str
                   ) -> Callable[[Any, Any, dict], dict]:
  """Returns `eval_step(params, model_state, batch, **model_kwargs) -> per-task summable stats`."""
  def eval_step(params, model_state, batch, **model_kwargs):
    outputs = model.apply({"params": params, **model_state}, batch[input_key], train=False, **model_kwargs)
    _, stats = task_losses_and_stats(outputs, batch, tasks)
    return stats
  return eval_step
