"""Sandwich-rule train step for slimmable multi-task models, with CIKD (Aich et al., ICCV 2023).

Each step runs the largest configuration (the teacher), the smallest, and `num_random` configurations drawn
from a fixed pool of `pool_size` random ones (covering every intermediate encoder width and every head width
of every task). Widths set array shapes, so each choice of pool entries is its own compiled step: the host
draws the entries from (seed, step) (`pool_picks`, so a resumed run redraws the same ones) and the loop runs
the matching step, compiled the first time it is picked (`ScheduledStep`; at most pool_size ** num_random
variants). A `lax.switch` over the pool inside one compiled step was measured 16x slower per step on CPU
(fashion scenes, pool 8: 10.9 s vs 0.67 s at batch 8), since its gradient carries every branch's residuals.
Every configuration's task losses are summed (gradients accumulate over sub-networks); every student adds
`cikd_weight * cikd_loss(its encoder features, teacher features)`, with the teacher behind a stop-gradient,
spread evenly over the task losses so any mtl.optim method sees it.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtl.control import widths as widths_lib
from mtl.control.cikd import cikd_loss
from mtl.optim import combine_gradients
from mtl.tasks.base import TaskSpec
from mtl.train.registry import TRAIN_STEPS
from mtl.train.state import TrainState
from mtl.train.step import ScheduledStep, StepOutput, finish_step, forward, task_losses_and_stats


def random_pool(control: ml_collections.ConfigDict, task_names: list[str], seed: int
                ) -> list[widths_lib.WidthConfig]:
  """The fixed pool of random configurations the step samples from (deterministic in `seed`).

  Encoder widths cycle through the intermediate widths (the largest and smallest are trained every step), so
  every encoder sub-network is trained. Each task's head widths are stratified: the pool holds every width
  (intermediate ones first) equally often, shuffled independently per task, so no head width goes untrained
  once pool_size >= len(widths). (Drawing head widths i.i.d. left the semseg head at width 0.5 out of an
  8-entry pool on fashion scenes, and that sub-network then scored 0.13 mIoU against 0.36 at width 0.75.)
  """
  pool_size = int(control.get("pool_size", 8))
  if pool_size < 1:
    raise ValueError(f"control.pool_size must be >= 1, got {pool_size}")
  widths = sorted(float(w) for w in control.widths)
  middle = widths[1:-1] or widths
  head_order = middle + [w for w in widths if w not in middle]
  strata = [head_order[i % len(head_order)] for i in range(pool_size)]
  rng = np.random.default_rng([seed, 7])
  head_widths = {t: rng.permutation(strata).tolist() for t in task_names}
  return [widths_lib.WidthConfig.create(middle[i % len(middle)], {t: float(head_widths[t][i]) for t in task_names})
          for i in range(pool_size)]


def pool_picks(seed: int, step: int, num_random: int, pool_size: int) -> tuple[int, ...]:
  """The pool entries (indices) trained at `step` (1-based), deterministic in (seed, step)."""
  if num_random < 0 or pool_size < 1:
    raise ValueError(f"need num_random >= 0 and pool_size >= 1, got {num_random}, {pool_size}")
  return tuple(int(i) for i in np.random.default_rng([seed, step, 11]).integers(0, pool_size, num_random))


def make_sandwich_train_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                             method, input_key: str, control: ml_collections.ConfigDict, seed: int,
                             picks: tuple[int, ...] | None = None
                             ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """`step(state, batch) -> (state, metrics)` training with the sandwich rule + CIKD.

  `control`: widths (allowed multipliers), num_random (random configs per step), pool_size, cikd_weight,
  cikd_normalize. `picks`: the pool entries this step trains (num_random indices; default the first
  num_random entries). Logged task losses, stats, batch statistics and model metrics are those of the largest
  configuration; every configuration's sown auxiliary losses (e.g. MoE load balancing) are in the objective.
  """
  names = [t.name for t in tasks]
  widths = tuple(float(w) for w in control.widths)
  num_random = int(control.get("num_random", 1))
  cikd_weight = float(control.get("cikd_weight", 1.0))
  if num_random < 0:
    raise ValueError(f"control.num_random must be >= 0, got {num_random}")
  if cikd_weight < 0:
    raise ValueError(f"control.cikd_weight must be >= 0, got {cikd_weight}")
  normalize = bool(control.get("cikd_normalize", False))
  teacher_cfg = widths_lib.largest(widths, names)
  smallest_cfg = widths_lib.smallest(widths, names)
  pool = random_pool(control, names, seed)
  picks = tuple(range(num_random)) if picks is None else tuple(int(p) for p in picks)
  if len(picks) != num_random or any(not 0 <= p < len(pool) for p in picks):
    raise ValueError(f"picks {picks} must be {num_random} indices into the pool of {len(pool)}")
  students = [smallest_cfg] + [pool[p] for p in picks]
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    dropout_rng, _ = jax.random.split(jax.random.fold_in(state.rng, state.step))
    x = batch[input_key]

    def task_loss_fn(params):
      def run(cfg):
        outputs, mutated, aux = forward(model, params, state.model_state, x, dropout_rng, return_features=True,
                                        **cfg.apply_kwargs())
        return outputs, mutated, aux

      (outputs, teacher), mutated, aux = run(teacher_cfg)
      teacher_losses, stats = task_losses_and_stats(outputs, batch, tasks)
      total, aux_total, cikd = teacher_losses, aux, jnp.zeros((), jnp.float32)
      for cfg in students:
        (out, feats), _, aux_j = run(cfg)
        losses, _ = task_losses_and_stats(out, batch, tasks)
        total, aux_total = total + losses, aux_total + aux_j
        cikd = cikd + cikd_loss(feats, teacher, normalize=normalize)
      total = total + (aux_total + cikd_weight * cikd) / num_tasks
      return total, StepOutput(stats, mutated, teacher_losses, aux, {"cikd": cikd, "aux_loss/all": aux_total})

    grads, mtl_state, total, out, mtl_metrics = combine_gradients(method, state.mtl_state, task_loss_fn,
                                                                  state.params, state.step)
    return finish_step(tx, tasks, state, grads, mtl_state, out, mtl_metrics, total)

  return step


@TRAIN_STEPS.register("sandwich")
def sandwich_step(exp) -> ScheduledStep:
  """Train-step variant 'sandwich' (config.train_step) of an experiment with `config.control`: a `ScheduledStep`
  whose variant for each step is the sandwich step with that step's `pool_picks`."""
  config = exp.config
  if not config.get("control"):
    raise ValueError("train_step 'sandwich' needs config.control (see configs/common.py:make_controllable)")
  num_random = int(config.control.get("num_random", 1))
  pool_size = int(config.control.get("pool_size", 8))
  make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key, config.control,
                           config.seed)  # validates the control values before training starts
  return ScheduledStep(
      key_for_step=lambda step: pool_picks(config.seed, step, num_random, pool_size),
      build=lambda picks: make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key,
                                                   config.control, config.seed, picks))


