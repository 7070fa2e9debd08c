"""Train-step variant 'teacher_distill': task losses plus distillation from a frozen teacher checkpoint.

For every task t the loss is `task_loss_t + kd_weight * KL(teacher_t || student_t)`, the KL over the task's
target positions (`distill_kl`: LM-style outputs [B, L, V] with integer targets [B, L], or
classification [B, C] with targets [B]). The teacher is the model and parameters of another run's checkpoint
(`config.teacher.workdir`, `config.teacher.step` or its latest), run in training mode without gradient; its
architecture may differ from the student's (e.g. the multi-head source of a grouped-query student, see
experiments/uptrain_gqa.py), but its tasks and output shapes must match. Logged: 'distill/<task>/kl'.

The teacher's parameters are closed over by the step (constants of the compiled step): fine for the small
models this is used on; a fork distilling a large sharded teacher would pass them as a jit argument instead.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtl.tasks.base import TaskSpec
from mtl.train.registry import TRAIN_STEPS
from mtl.train.state import TrainState
from mtl.train.step import StepOutput, finish_step, forward, task_losses_and_stats


def distill_kl(teacher: jax.Array, student: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean KL(softmax(teacher) || softmax(student)) in nats over positions with targets >= 0.

  teacher, student: [..., V] logits of the same shape; targets: int [...] (their leading shape; negative =
  padding). The teacher gets no gradient.
  """
  if teacher.shape != student.shape:
    raise ValueError(f"teacher logits {teacher.shape} != student logits {student.shape}")
  if targets.shape != student.shape[:-1]:
    raise ValueError(f"targets {targets.shape} must be the outputs' leading shape {student.shape[:-1]}")
  t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher).astype(jnp.float32), -1)
  s = jax.nn.log_softmax(student.astype(jnp.float32), -1)
  kl = jnp.sum(jnp.exp(t) * (t - s), -1)
  w = (targets >= 0).astype(jnp.float32)
  return jnp.sum(kl * w) / jnp.maximum(jnp.sum(w), 1.0)


def check_teacher_config(teacher: ml_collections.ConfigDict | None) -> tuple[str, int | None, float]:
  """(workdir, step or None, kd_weight) from `config.teacher`, validated."""
  if teacher is None or not teacher.get("workdir"):
    raise ValueError("train_step 'teacher_distill' needs config.teacher.workdir (the teacher run's workdir)")
  kd_weight = float(teacher.get("kd_weight", 1.0))
  if not kd_weight > 0 or kd_weight == float("inf"):
    raise ValueError(f"config.teacher.kd_weight must be finite and > 0 (0: use train_step 'standard'), "
                     f"got {kd_weight}")
  step = teacher.get("step", None)
  if step is not None and int(step) < 0:
    raise ValueError(f"config.teacher.step must be >= 0 or None (latest), got {step}")
  return str(teacher.workdir), None if step is None else int(step), kd_weight


def make_teacher_distill_step(model: nn.Module, tasks: tuple[TaskSpec, ...], tx: optax.GradientTransformation,
                              method: Any, input_key: str, teacher_model: nn.Module, teacher_params: Any,
                              teacher_model_state: Any, kd_weight: float
                              ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """`step(state, batch) -> (state, metrics)` (unjitted): per-task loss + kd_weight * KL(teacher || student)."""
  num_tasks = len(tasks)

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    x = batch[input_key]
    dropout_rng, teacher_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
    teacher_out, _, _ = forward(teacher_model, teacher_params, teacher_model_state, x, teacher_rng)

    def loss_fn(params):
      out, mutated, aux = forward(model, params, state.model_state, x, dropout_rng)
      losses, stats = task_losses_and_stats(out, batch, tasks)
      kls = jnp.stack([distill_kl(teacher_out[t.name], out[t.name], batch[t.target_key]) for t in tasks])
      metrics = {f"distill/{t.name}/kl": kls[i] for i, t in enumerate(tasks)}
      return losses + kd_weight * kls + aux / num_tasks, StepOutput(stats, mutated, losses, aux, metrics)

    return finish_step(tx, method, tasks, state, loss_fn)

  return step


@TRAIN_STEPS.register("teacher_distill")
def teacher_distill_step(exp) -> Callable:
  """Train-step variant 'teacher_distill' (config.train_step) with `config.teacher`."""
  from mtl.train import loop  # pylint: disable=import-outside-toplevel  (loop builds steps from this registry)
  workdir, step, kd_weight = check_teacher_config(exp.config.get("teacher", None))
  t_exp, t_state, _ = loop.restore_experiment(workdir, step, exp.mesh)
  want, have = [t.name for t in exp.tasks], [t.name for t in t_exp.tasks]
  if want != have:
    raise ValueError(f"teacher run {workdir} has tasks {have}; the student has {want}")
  return make_teacher_distill_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key, t_exp.model,
                                   t_state.params, t_state.model_state, kd_weight)
