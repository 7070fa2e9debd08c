"""Configuration-Invariant Knowledge Distillation (CIKD) on the shared encoder's representations.

The full-width encoder (largest configuration of the sandwich) is the teacher; every other sampled
configuration is a student whose encoder features should not depend on the width configuration.

Width mismatch: a slimmed encoder's features are the *leading* channels of the same weight slices as
the teacher's (mtl/nn/slimmable.py), so channel c of the student and of the teacher are produced by the same
filter. We therefore compare the student with the teacher's leading C_s channels (slicing, no extra
projection parameters) - a projection would add weights that the deployed sub-network does not have.
The loss is the mean squared difference over all elements (batch, positions, channels), the teacher is
under `stop_gradient`, and the caller weights it by `config.control.cikd_weight`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cikd_loss(student_feats: jnp.ndarray, teacher_feats: jnp.ndarray, mask: jnp.ndarray | None = None,
              normalize: bool = False) -> jnp.ndarray:
  """Scalar CIKD loss.

  Args:
    student_feats: [B, ..., C_s] encoder features of a slimmed configuration.
    teacher_feats: [B, ..., C_t] full-width encoder features, C_t >= C_s, same leading shape.
    mask: optional [B] weights (e.g. 1 for real, 0 for padded examples).
    normalize: L2-normalize both over the compared channels first (compares directions only).

  Returns: float32 scalar, mean over examples (mask-weighted) of the per-example mean squared error.
  """
  if student_feats.shape[:-1] != teacher_feats.shape[:-1]:
    raise ValueError(f"cikd_loss: student {student_feats.shape} and teacher {teacher_feats.shape} differ "
                     "outside the channel axis")
  c = student_feats.shape[-1]
  if teacher_feats.shape[-1] < c:
    raise ValueError(f"cikd_loss: teacher has {teacher_feats.shape[-1]} channels, fewer than the "
                     f"student's {c}")
  s = student_feats.astype(jnp.float32)
  t = jax.lax.stop_gradient(teacher_feats[..., :c].astype(jnp.float32))
  if normalize:
    s = s * jax.lax.rsqrt(jnp.sum(s * s, axis=-1, keepdims=True) + 1e-12)
    t = t * jax.lax.rsqrt(jnp.sum(t * t, axis=-1, keepdims=True) + 1e-12)
  per_example = jnp.mean(jnp.square(s - t).reshape(s.shape[0], -1), axis=1)
  if mask is None:
    return jnp.mean(per_example)
  if mask.shape != (s.shape[0],):
    raise ValueError(f"cikd_loss: mask must have shape [{s.shape[0]}], got {mask.shape}")
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)
