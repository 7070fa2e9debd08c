"""In-place distillation of predictions: the largest configuration teaches every sub-network its outputs.

Beside CIKD on the shared features (mtl/control/cikd.py), each student of the sandwich step matches the
teacher's task outputs, with the teacher behind a stop-gradient (Yu & Huang, "Universally Slimmable Networks",
2019; Aich et al., ICCV 2023 for the multi-task setting):
  * softmax kinds (classification, semseg: logits over the last axis): KL(teacher || student), mean over
    examples / pixels;
  * every other kind (depth, edges, binary, ...): mean squared difference of the raw outputs.
A task kind may declare `DISTILL = "kl"` or `"l2"` in its module to choose; otherwise `KL_KINDS` decides.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl import tasks as tasks_lib
from mtl.tasks.base import TaskSpec
from mtl.tasks.masking import sample_mask

KL_KINDS = ("classification", "semseg")
DISTANCES = ("kl", "l2")


def distance_of(kind: str) -> str:
  """'kl' or 'l2' for a task kind (its module's DISTILL if set)."""
  d = getattr(tasks_lib.get_kind(kind), "DISTILL", None) or ("kl" if kind in KL_KINDS else "l2")
  if d not in DISTANCES:
    raise ValueError(f"task kind {kind!r} declares DISTILL={d!r}; expected one of {DISTANCES}")
  return d


def kl_distill(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, mask: jnp.ndarray | None = None
               ) -> jnp.ndarray:
  """Mean over [B, ...] positions of KL(softmax(teacher) || softmax(student)) over the last axis (nats)."""
  t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), axis=-1)
  s = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return _masked_mean(jnp.sum(jnp.exp(t) * (t - s), axis=-1), mask)


def l2_distill(student: jnp.ndarray, teacher: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean over [B, ...] positions of the squared difference summed over the last axis."""
  d = student.astype(jnp.float32) - jax.lax.stop_gradient(teacher).astype(jnp.float32)
  return _masked_mean(jnp.sum(d * d, axis=-1), mask)


def _masked_mean(per_position: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
  """per_position [B, ...]; mask [B] or None (weights whole examples)."""
  w = sample_mask(mask, per_position.shape[0]).reshape((-1,) + (1,) * (per_position.ndim - 1))
  w = jnp.broadcast_to(w, per_position.shape)
  return jnp.sum(per_position * w) / jnp.maximum(jnp.sum(w), 1.0)


def output_distill_losses(student: dict, teacher: dict, batch: dict, tasks: tuple[TaskSpec, ...]) -> jnp.ndarray:
  """float32 [T]: each task's distillation loss of `student` outputs towards `teacher` outputs (stop-gradient)."""
  out = []
  for t in tasks:
    if student[t.name].shape != teacher[t.name].shape:
      raise ValueError(f"output distillation of {t.name!r}: student {student[t.name].shape} and teacher "
                       f"{teacher[t.name].shape} outputs differ in shape")
    fn = kl_distill if distance_of(t.kind) == "kl" else l2_distill
    out.append(fn(student[t.name], teacher[t.name], batch.get(t.mask_key)))
  return jnp.stack(out)
