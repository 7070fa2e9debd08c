"""Sandwich-rule train step for slimmable multi-task models, with CIKD and output distillation (Aich et al.,
ICCV 2023).

Each step trains the largest configuration (the teacher), the smallest, and `num_random` freshly drawn
students that together cover every (encoder width, head width) pair of every task (mtl/control/coverage.py:
within ceil(sum(head_counts) * sum(encoder_counts) / num_random) steps for W widths; `encoder_counts` and
`head_counts`, one per width, default all 1, set how often each encoder width and each head width is a student).
`uniform_students` (default none) adds, at every step, the uniform configurations of those middle widths (encoder
and every head at width w): the switchable list of Slimmable Networks (Yu et al., 2019) beside the covering draws,
so the configurations that stand in for fixed-width models are trained every step, not only when drawn.
`uniform_per_step` k (default 0 = all of them) trains only k of them per step, round robin
(`uniform_for_step`: each uniform width every n / k steps), so the step costs k rather than n extra sub-networks;
the host names the variant by them too.

Speed. Widths set array shapes. The students' encoder widths are drawn on the host from (seed, step) and name
the compiled variant (a `ScheduledStep` key; W ** num_random variants, 4 for the default W = 4, num_random =
1). Their head widths are drawn inside the compiled step from the same (seed, step) and applied as hidden-unit
masks on full-width heads (`MultiTaskModel.head_mask_tables`), which equals the sliced head at that width
(tests/control/test_masked_heads.py), so the W ** T head choices need no recompilation. (Slicing every
configuration would need W ** (T + 1) = 256 variants on fashion scenes; a `lax.switch` over configurations
was measured 16x slower per step on CPU.)

`sliced_students` (default False) trades compilations for step time: each drawn student uses one head width
for every task (`coverage.student_draw(shared_heads=True)`: still every pair of every task per block), the host
names the student by (encoder width, head width), and the step slices it (W ** (2 * num_random) variants, 16 for
the default) instead of running full-width heads with masks, whose cost is the full heads' whatever the width.

Loss. Every configuration's task losses are summed (gradients accumulate over sub-networks), the students' scaled
by `student_weight` (default 1, the paper's plain sum; below 1 the teacher's own gradient is a larger share of
the shared update). Every student adds
  * `cikd_weight * cikd_loss(its encoder features, teacher features)` (spread evenly over the task losses),
  * `output_distill_weight * output_distill_losses(its outputs, teacher outputs)` (per task: KL for softmax
    kinds, squared distance otherwise; mtl/control/output_distill.py),
with the teacher behind a stop-gradient. A weight of 0 switches a term off.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtl.control import coverage
from mtl.control import widths as widths_lib
from mtl.control.cikd import cikd_loss
from mtl.control.output_distill import output_distill_losses
from mtl.tasks.base import TaskSpec
from mtl.train.registry import TRAIN_STEPS
from mtl.train.state import TrainState
from mtl.train.step import ScheduledStep, StepOutput, finish_step, forward, task_losses_and_stats

CONTROL_KEYS = ("enabled", "widths", "num_random", "cikd_weight", "cikd_normalize", "output_distill_weight",
                "student_weight", "encoder_counts", "head_counts", "uniform_students", "uniform_per_step",
                "sliced_students")


class ControlValues(NamedTuple):
  """`config.control`, validated (see `control_values`)."""
  widths: tuple[float, ...]  # ascending
  num_random: int
  cikd_weight: float
  cikd_normalize: bool
  output_distill_weight: float
  student_weight: float
  encoder_counts: tuple[int, ...]  # copies of each encoder width per covering block (mtl/control/coverage.py)
  head_counts: tuple[int, ...]  # copies of each head width per covering block (every task's head)
  uniform_students: tuple[float, ...]  # middle widths whose uniform configuration is trained every step
  uniform_per_step: int  # how many of them each step trains, round robin (= len(uniform_students): all)
  sliced_students: bool  # drawn students share one head width across tasks and are sliced, not masked


def control_values(control: ml_collections.ConfigDict) -> ControlValues:
  """`config.control` validated: unknown keys, negative weights and values that would have no effect raise."""
  unknown = sorted(set(control.keys()) - set(CONTROL_KEYS))
  if unknown:
    hint = " (pool_size was removed: the students now cover every width pair)" if "pool_size" in unknown else ""
    raise ValueError(f"unknown config.control keys {unknown}{hint}; known: {CONTROL_KEYS}")
  widths = tuple(sorted(float(w) for w in control.widths))
  num_random = int(control.get("num_random", 1))
  cikd_weight = float(control.get("cikd_weight", 1.0))
  normalize = bool(control.get("cikd_normalize", False))
  distill_weight = float(control.get("output_distill_weight", 0.0))
  student_weight = float(control.get("student_weight", 1.0))
  if len(widths) < 2:
    raise ValueError(f"control.widths needs >= 2 widths for a sandwich, got {widths}")
  if num_random < 1:
    raise ValueError(f"control.num_random must be >= 1 (the students that cover the width pairs), got {num_random}")
  if cikd_weight < 0 or distill_weight < 0:
    raise ValueError(f"control.cikd_weight and control.output_distill_weight must be >= 0 (0 = off), got "
                     f"{cikd_weight}, {distill_weight}")
  if normalize and cikd_weight == 0:
    raise ValueError("control.cikd_normalize=True has no effect with cikd_weight=0 (CIKD off)")
  uniform = _uniform_students(control, widths)
  if not 0 < student_weight <= 1e3:
    raise ValueError(f"control.student_weight must be in (0, 1000] (the students' task-loss weight; 1 = the plain "
                     f"sandwich sum), got {student_weight}")
  return ControlValues(widths, num_random, cikd_weight, normalize, distill_weight, student_weight,
                       _counts(control, "encoder_counts", len(widths), "encoder"),
                       _counts(control, "head_counts", len(widths), "head"), uniform,
                       _uniform_per_step(control, uniform), _flag(control, "sliced_students"))


def _flag(control: ml_collections.ConfigDict, key: str) -> bool:
  """A boolean field of `control` (missing = False); anything but a bool raises, naming it."""
  value = control.get(key, False)
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"control.{key} must be True or False, got {value!r}")
  return bool(value)


def _uniform_students(control: ml_collections.ConfigDict, widths: tuple[float, ...]) -> tuple[float, ...]:
  """`control.uniform_students` validated: distinct widths strictly between the smallest and the largest (those
  two are trained every step already), ascending."""
  raw = control.get("uniform_students") or ()
  try:
    chosen = [float(w) for w in raw]
  except (TypeError, ValueError):
    raise ValueError(f"control.uniform_students must be a sequence of widths, got {raw!r}") from None
  middle = widths[1:-1]
  bad = [w for w in chosen if w not in middle]
  if bad:
    raise ValueError(f"control.uniform_students {bad} are not middle widths {middle} of control.widths {widths} "
                     "(the largest and smallest configurations are trained every step already)")
  if len(set(chosen)) != len(chosen):
    raise ValueError(f"control.uniform_students has a repeated width: {tuple(chosen)}")
  return tuple(sorted(chosen))


def _uniform_per_step(control: ml_collections.ConfigDict, uniform: tuple[float, ...]) -> int:
  """`control.uniform_per_step` validated: 0 / missing = all of `uniform`, else an int in [1, len(uniform)]."""
  raw = control.get("uniform_per_step")
  raw = 0 if raw is None else raw
  if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, np.integer)):
    raise ValueError(f"control.uniform_per_step must be an int, got {raw!r}")
  if raw and not uniform:
    raise ValueError(f"control.uniform_per_step={raw} has no effect without control.uniform_students")
  if not 0 <= raw <= len(uniform):
    raise ValueError(f"control.uniform_per_step must be in [0, {len(uniform)}] (0 = every one of "
                     f"control.uniform_students {uniform} at every step), got {raw}")
  return int(raw) or len(uniform)


def uniform_for_step(uniform: tuple[float, ...], per_step: int, step: int) -> tuple[float, ...]:
  """The uniform widths `step` (1-based, host side) trains: `per_step` of `uniform`, round robin from the first, so
  every width is trained per_step / len(uniform) of the steps (all of them when per_step = len(uniform))."""
  n = len(uniform)
  if per_step >= n:
    return tuple(uniform)
  return tuple(sorted(uniform[((step - 1) * per_step + i) % n] for i in range(per_step)))


def _counts(control: ml_collections.ConfigDict, key: str, num_widths: int, what: str) -> tuple[int, ...]:
  """`control.<key>` validated by `coverage.check_counts` (None = all 1); errors name the field."""
  raw = control.get(key)
  try:
    return coverage.check_counts(None if raw is None else tuple(raw), num_widths, what)
  except (TypeError, ValueError) as e:
    raise ValueError(f"control.{key}: {e}") from None


def make_sandwich_train_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                             method, input_key: str, control: ml_collections.ConfigDict, seed: int,
                             encoder_widths: tuple[float, ...] | None = None,
                             head_widths: tuple[float, ...] | None = None,
                             uniform_widths: tuple[float, ...] | None = None
                             ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """`step(state, batch) -> (state, metrics)` training with the sandwich rule + CIKD + output distillation.

  `control`: see `control_values`. `encoder_widths`: the students' encoder widths (num_random of them; the
  host-drawn `coverage.encoder_key` of the steps this variant runs). The students' head widths are drawn inside
  from (seed, state.step + 1); with `control.sliced_students` they are given instead (`head_widths`, one per
  student, shared by every task: `coverage.sliced_key`) and the students are sliced. `uniform_widths`: the
  uniform configurations this variant trains (`uniform_for_step`; None = those of step 1, all of
  control.uniform_students unless control.uniform_per_step is smaller).
  Logged task losses, stats, batch statistics and model metrics are those of the largest configuration; every
  configuration's sown auxiliary losses (e.g. MoE load balancing) are in the objective. Logged beside them:
  'cikd', 'output_distill', 'aux_loss/all' and the students' head widths 'control/head_width/<j>/<task>'.
  """
  names = [t.name for t in tasks]
  (widths, num_random, cikd_weight, normalize, distill_weight, student_weight, counts, head_counts,
   uniform_all, per_step, sliced) = control_values(control)
  uniform = (uniform_for_step(uniform_all, per_step, 1) if uniform_widths is None
             else tuple(float(w) for w in uniform_widths))
  if len(uniform) != per_step or any(w not in uniform_all for w in uniform):
    raise ValueError(f"uniform_widths {uniform} must be {per_step} of control.uniform_students {uniform_all}")
  if encoder_widths is None:
    encoder_widths = (widths[-1],) * num_random
  encoder_widths = tuple(float(w) for w in encoder_widths)
  if len(encoder_widths) != num_random or any(w not in widths for w in encoder_widths):
    raise ValueError(f"encoder_widths {encoder_widths} must be {num_random} of the widths {widths}")
  if sliced:
    head_widths = (widths[-1],) * num_random if head_widths is None else tuple(float(w) for w in head_widths)
    if len(head_widths) != num_random or any(w not in widths for w in head_widths):
      raise ValueError(f"head_widths {head_widths} must be {num_random} of the widths {widths} (sliced students)")
  elif head_widths is not None:
    raise ValueError("head_widths are drawn inside the step unless control.sliced_students is set")
  if not hasattr(model, "head_mask_tables"):
    raise ValueError(f"{type(model).__name__} has no head_mask_tables(widths), which the sandwich step needs to "
                     "train traced head widths")
  tables = {t: jnp.asarray(m) for t, m in model.head_mask_tables(widths).items()}
  width_values = jnp.asarray(widths, jnp.float32)
  teacher_cfg = widths_lib.largest(widths, names)
  smallest_cfg = widths_lib.smallest(widths, names)
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    dropout_rng, _ = jax.random.split(jax.random.fold_in(state.rng, state.step))
    x = batch[input_key]
    _, head_idx = coverage.step_draws(seed, state.step + 1, num_random, len(widths), num_tasks, counts,
                                       head_counts, sliced)  # [R, T]

    def task_loss_fn(params):
      def run(**kwargs):
        return forward(model, params, state.model_state, x, dropout_rng, return_features=True, **kwargs)

      (outputs, teacher), mutated, aux = run(**teacher_cfg.apply_kwargs())
      teacher_losses, stats = task_losses_and_stats(outputs, batch, tasks)
      students = [smallest_cfg.apply_kwargs()]
      if sliced:
        students += [widths_lib.WidthConfig.create(w, {t: h for t in names}).apply_kwargs()
                     for w, h in zip(encoder_widths, head_widths)]
      else:
        students += [{"encoder_width": w, "head_masks": {t: tables[t][head_idx[j, i]] for i, t in enumerate(names)
                                                         if t in tables}}
                     for j, w in enumerate(encoder_widths)]
      students += [widths_lib.WidthConfig.create(w, {t: w for t in names}).apply_kwargs() for w in uniform]
      total, aux_total = teacher_losses, aux
      cikd, distill = jnp.zeros((), jnp.float32), jnp.zeros((num_tasks,), jnp.float32)
      for kwargs in students:
        (out, feats), _, aux_j = run(**kwargs)
        losses, _ = task_losses_and_stats(out, batch, tasks)
        total, aux_total = total + student_weight * losses, aux_total + aux_j
        if cikd_weight:
          cikd = cikd + cikd_loss(feats, teacher, normalize=normalize)
        if distill_weight:
          distill = distill + output_distill_losses(out, outputs, batch, tasks)
      total = total + distill_weight * distill + (aux_total + cikd_weight * cikd) / num_tasks
      metrics = {"cikd": cikd, "output_distill": jnp.sum(distill), "aux_loss/all": aux_total}
      metrics.update({f"control/head_width/{j}/{t}": width_values[head_idx[j, i]]
                      for j in range(num_random) for i, t in enumerate(names)})
      return total, StepOutput(stats, mutated, teacher_losses, aux, metrics)

    return finish_step(tx, method, tasks, state, task_loss_fn)

  return step


@TRAIN_STEPS.register("sandwich")
def sandwich_step(exp) -> ScheduledStep:
  """Train-step variant 'sandwich' (config.train_step) of an experiment with `config.control`: a `ScheduledStep`
  whose variant for each step is keyed by the students' encoder widths (`coverage.encoder_key`), or with
  `control.sliced_students` by their (encoder width, head width) pairs (`coverage.sliced_key`), and by the uniform
  widths the step trains (`uniform_for_step`)."""
  config = exp.config
  if not config.get("control"):
    raise ValueError("train_step 'sandwich' needs config.control (see configs/common.py:make_controllable)")
  values = control_values(config.control)
  make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key, config.control,
                           config.seed)  # validates the control values and the model before training starts
  num_tasks = len(exp.tasks)
  if values.sliced_students:  # students ((encoder width, head width), ...)
    draw_key = coverage.sliced_key
    widths_of = lambda students: (tuple(e for e, _ in students), tuple(h for _, h in students))  # noqa: E731
  else:  # students (encoder width, ...); head widths drawn inside the step
    draw_key = coverage.encoder_key
    widths_of = lambda students: (students, None)  # noqa: E731

  def key_for_step(step: int):  # (students, uniform widths of the step)
    return (draw_key(config.seed, step, values.num_random, values.widths, num_tasks, values.encoder_counts,
                     values.head_counts),
            uniform_for_step(values.uniform_students, values.uniform_per_step, step))

  return ScheduledStep(
      key_for_step=key_for_step,
      build=lambda key: make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key,
                                                 config.control, config.seed, *widths_of(key[0]), key[1]))
