"""The jitted, sharded train and eval steps of a multi-task model."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mtl import tasks as tasks_lib
from mtl.optim import FeatureSplit, combine_gradients
from mtl.tasks.base import TaskSpec
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


def make_train_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                    method: Any, input_key: str, apply_kwargs_fn: Callable[[jax.Array], dict] | None = None
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns `step(state, batch) -> (state, metrics)` (not yet jitted; see `jit_train_step`).

  The per-task loss vector goes to the multi-task `method` (mtl.optim), whose combined gradient feeds `tx`.
  Auxiliary losses sown by the model ('aux_loss') are spread evenly over the task losses so every method sees
  them. `apply_kwargs_fn(rng)` may add model call arguments per step (e.g. sampled widths).
  """
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, kwargs_rng = jax.random.split(rng)
    extra = apply_kwargs_fn(kwargs_rng) if apply_kwargs_fn else {}

    def task_loss_fn(params):
      outputs, mutated = model.apply({"params": params, **state.model_state}, batch[input_key], train=True,
                                     rngs={"dropout": dropout_rng}, mutable=list(MUTABLE_TRAIN), **extra)
      losses, stats = task_losses_and_stats(outputs, batch, tasks)
      aux = sum_sown(mutated.get("aux_loss", {}))
      return losses + aux / num_tasks, (stats, mutated, losses, aux)

    loss_fn = task_loss_fn
    if getattr(method, "kind", None) == "features":
      loss_fn = _feature_split(model, state, batch[input_key], batch, tasks, dropout_rng, extra)
    grads, mtl_state, _, (stats, mutated, raw_losses, aux_loss), mtl_metrics = combine_gradients(
        method, state.mtl_state, loss_fn, state.params, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    model_state = dict(state.model_state)
    if "batch_stats" in mutated:
      model_state["batch_stats"] = mutated["batch_stats"]
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state,
                              mtl_state=mtl_state)
    metrics = {"loss": jnp.sum(raw_losses) + aux_loss, "aux_loss": aux_loss,
               "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params)}
    metrics.update({f"loss/{t.name}": raw_losses[i] for i, t in enumerate(tasks)})
    metrics.update(flatten_sown(mutated.get("metrics", {}), "model"))
    metrics.update({f"mtl/{k}": v for k, v in mtl_metrics.items()})
    return new_state, {"scalars": metrics, "stats": stats}

  return step


def _feature_split(model, state, x, batch, tasks, rng, extra) -> FeatureSplit:
  """Task losses split at the shared features (for methods such as MGDA-UB); needs `encode` / `decode`.

  Auxiliary losses sown by the encoder are not part of this route; use a loss or gradient method for MoE
  encoders.
  """
  if not (hasattr(model, "encode") and hasattr(model, "decode")):
    raise ValueError(f"{type(model).__name__} has no encode/decode split, so feature-level methods "
                     "(e.g. mgda_ub) cannot run on it; pick a gradient method such as mgda")
  variables = lambda p: {"params": p, **state.model_state}
  enc_kwargs = {k: v for k, v in extra.items() if k == "encoder_width"}
  dec_kwargs = {k: v for k, v in extra.items() if k == "head_widths"}

  def features_fn(params):
    return model.apply(variables(params), x, train=True, rngs={"dropout": rng}, method="encode", **enc_kwargs)

  def head_loss_fn(params, z):
    outputs = model.apply(variables(params), z, train=True, rngs={"dropout": rng}, method="decode", **dec_kwargs)
    losses, stats = task_losses_and_stats(outputs, batch, tasks)
    return losses, (stats, {}, losses, jnp.zeros((), jnp.float32))

  return FeatureSplit(features_fn, head_loss_fn)


def make_eval_step(model: nn.Module, tasks: tuple[TaskSpec, ...], input_key: str
                   ) -> Callable[[Any, Any, dict], dict]:
  """Returns `eval_step(params, model_state, batch, **model_kwargs) -> per-task summable stats`."""
  def eval_step(params, model_state, batch, **model_kwargs):
    outputs = model.apply({"params": params, **model_state}, batch[input_key], train=False, **model_kwargs)
    _, stats = task_losses_and_stats(outputs, batch, tasks)
    return stats
  return eval_step
