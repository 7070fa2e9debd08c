"""Train step for a DecoderLM whose width-sliced sub-models are its own speculative drafts (S2D-style).

Each step runs the full model and every draft width in `config.draft.widths` on the same batch with shared
(sliced) weights. Every width's task losses are summed, and every draft adds a distillation term
`kd_weight * KL(teacher || draft)` over the target tokens, with the full model as teacher behind a
stop-gradient. Distilling into the draft raises the speculative acceptance rate, which is the quantity that
sets the decoding speed-up (mtl/speculative.py). Logged task stats are those of the full model.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtl.tasks.base import TaskSpec
from mtl.train.registry import TRAIN_STEPS
from mtl.train.state import TrainState
from mtl.train.step import StepOutput, finish_step, forward, task_losses_and_stats
from mtl.train.teacher_distill import distill_kl  # noqa: F401  (re-exported: the KL every distillation uses)


def check_draft_config(draft: ml_collections.ConfigDict) -> tuple[tuple[float, ...], float]:
  """(widths, kd_weight) from `config.draft`, validated."""
  widths = tuple(float(w) for w in draft.get("widths", ()))
  if not widths:
    raise ValueError("config.draft.widths is empty: give the draft widths to train, e.g. (0.25, 0.5)")
  bad = [w for w in widths if not 0.0 < w < 1.0]
  if bad:
    raise ValueError(f"config.draft.widths must lie in (0, 1) (1.0 is the full model, always trained); "
                     f"got {bad}")
  kd_weight = float(draft.get("kd_weight", 1.0))
  if kd_weight < 0:
    raise ValueError(f"config.draft.kd_weight must be >= 0, got {kd_weight}")
  return widths, kd_weight


def make_nested_draft_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                           method, input_key: str, widths: tuple[float, ...], kd_weight: float
                           ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """`step(state, batch) -> (state, metrics)`: full model + drafts at `widths`, with distillation.

  Metrics add 'draft/<w>/loss' (sum of the draft's task losses) and 'draft/<w>/kl' per width.
  """
  if not hasattr(model, "slim"):
    raise ValueError(f"{type(model).__name__} has no width slicing (slim); nested drafts need a DecoderLM")
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    x = batch[input_key]
    dropout_rng, _ = jax.random.split(jax.random.fold_in(state.rng, state.step))

    def task_loss_fn(params):
      def run(width):
        return forward(model, params, state.model_state, x, dropout_rng, width=width)

      full, mutated, aux = run(1.0)
      full_losses, stats = task_losses_and_stats(full, batch, tasks)
      total, aux_total = full_losses, aux
      draft_metrics = {}
      for w in widths:
        out, _, aux_w = run(w)
        losses, _ = task_losses_and_stats(out, batch, tasks)
        kl = sum(distill_kl(full[t.name], out[t.name], batch[t.target_key]) for t in tasks) / num_tasks
        total, aux_total = total + losses + kd_weight * kl / num_tasks, aux_total + aux_w
        draft_metrics[f"draft/{w:g}/loss"] = jnp.sum(losses)
        draft_metrics[f"draft/{w:g}/kl"] = kl
      return total + aux_total / num_tasks, StepOutput(stats, mutated, full_losses, aux, draft_metrics)

    return finish_step(tx, method, tasks, state, task_loss_fn)

  return step


@TRAIN_STEPS.register("nested_draft")
def nested_draft_step(exp) -> Callable:
  """Train-step variant 'nested_draft' (config.train_step) for a DecoderLM with `config.draft.widths`."""
  widths, kd_weight = check_draft_config(exp.config.get("draft", ml_collections.ConfigDict()))
  return make_nested_draft_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key, widths, kd_weight)
