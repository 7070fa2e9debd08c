"""In-place distillation of predictions: the largest configuration teaches every sub-network its outputs.

Beside CIKD on the shared features (mtl/control/cikd.py), each student of the sandwich step matches the
teacher's task outputs, with the teacher behind a stop-gradient (Yu & Huang, "Universally Slimmable Networks",
2019; Aich et al., ICCV 2023 for the multi-task setting):
  * softmax kinds (classification, semseg: logits over the last axis): KL(teacher || student), mean over
    examples / pixels;
  * per-element sigmoid kinds (edges, boundary, saliency, binary: independent Bernoulli logits): the Bernoulli
    KL(sigmoid(teacher) || sigmoid(student)) summed over the last axis, mean over examples / pixels. (An L2 on
    these logits is unbounded in the teacher's confidence: a saturated teacher logit of 12 vs a student's 6 costs
    36 while the probabilities differ by 0.002; measured on fashion scenes it dominated the objective.)
  * every other kind (depth, regression, ...): mean squared difference of the raw outputs.
A task kind may declare `DISTILL = "kl"`, `"bernoulli"` or `"l2"` in its module to choose; otherwise
`KL_KINDS` / `BERNOULLI_KINDS` decide.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl import tasks as tasks_lib
from mtl.tasks.base import TaskSpec
from mtl.tasks.masking import sample_mask

KL_KINDS = ("classification", "semseg")
BERNOULLI_KINDS = ("edges", "boundary", "saliency", "binary")
DISTANCES = ("kl", "bernoulli", "l2")


def distance_of(kind: str) -> str:
  """'kl', 'bernoulli' or 'l2' for a task kind (its module's DISTILL if set)."""
  default = "kl" if kind in KL_KINDS else "bernoulli" if kind in BERNOULLI_KINDS else "l2"
  d = getattr(tasks_lib.get_kind(kind), "DISTILL", None) or default
  if d not in DISTANCES:
    raise ValueError(f"task kind {kind!r} declares DISTILL={d!r}; expected one of {DISTANCES}")
  return d


def kl_distill(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, mask: jnp.ndarray | None = None
               ) -> jnp.ndarray:
  """Mean over [B, ...] positions of KL(softmax(teacher) || softmax(student)) over the last axis (nats)."""
  t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), axis=-1)
  s = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return _masked_mean(jnp.sum(jnp.exp(t) * (t - s), axis=-1), mask)


def bernoulli_distill(student_logits: jnp.ndarray, teacher_logits: jnp.ndarray, mask: jnp.ndarray | None = None
                      ) -> jnp.ndarray:
  """Mean over [B, ...] positions of sum over the last axis of KL(Bern(sigmoid(t)) || Bern(sigmoid(s))) (nats).

  Written with log-sigmoids: p_t (log p_t - log p_s) + (1 - p_t)(log(1 - p_t) - log(1 - p_s)), finite for any
  logits (log(1 - sigmoid(x)) = log_sigmoid(-x)).
  """
  t = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
  s = student_logits.astype(jnp.float32)
  p = jax.nn.sigmoid(t)
  kl = (p * (jax.nn.log_sigmoid(t) - jax.nn.log_sigmoid(s))
        + (1.0 - p) * (jax.nn.log_sigmoid(-t) - jax.nn.log_sigmoid(-s)))
  return _masked_mean(jnp.sum(kl, axis=-1), mask)


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
    fn = {"kl": kl_distill, "bernoulli": bernoulli_distill, "l2": l2_distill}[distance_of(t.kind)]
    out.append(fn(student[t.name], teacher[t.name], batch.get(t.mask_key)))
  return jnp.stack(out)
