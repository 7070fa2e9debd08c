"""Sandwich-rule multi-task loss with CIKD, as one pure function for a jitted train step.

Per step (Yu & Huang's sandwich rule + Aich et al.'s CIKD): run the largest configuration (teacher), the
smallest and some random ones (`mtl.control.widths.sandwich`); every configuration's task losses are summed
(gradients accumulate over sub-networks, as in universally slimmable networks), and every non-teacher
configuration adds `cikd_weight * cikd_loss(student encoder features, stop_gradient(teacher features))`.
The configs are static (Python) values: close over them, or pass them as a static argument of the jit.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp

from mtl.control.cikd import cikd_loss
from mtl.control.widths import WidthConfig


def sandwich_task_losses(apply_fn: Callable[[WidthConfig], tuple[Mapping[str, Any], jnp.ndarray]],
                         configs: Sequence[WidthConfig],
                         task_losses_fn: Callable[[Mapping[str, Any]], jnp.ndarray],
                         cikd_weight: float = 0.0, cikd_normalize: bool = False,
                         mask: jnp.ndarray | None = None) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Per-task loss vector [T] for the multi-task method, summed over the sandwich configs.

  Args:
    apply_fn: config -> (outputs: task -> predictions, encoder features [B, ..., C_w]), e.g.
      `lambda c: model.apply(variables, x, train=True, return_features=True, **c.apply_kwargs())`.
    configs: configs[0] is the teacher (normally the largest); the rest are students.
    task_losses_fn: outputs -> per-task losses [T] (fixed task order).
    cikd_weight: weight of the CIKD term (0 disables it); the summed CIKD term is spread evenly over the T
      task losses so every multi-task method sees it (as step.py does with auxiliary losses).
    mask: optional [B] example weights for CIKD.

  Returns: (losses [T], metrics {'cikd': summed CIKD loss (unweighted), 'task_loss/config<i>': [T] losses
    of config i}).
  """
  if not configs:
    raise ValueError("sandwich_task_losses needs at least one config")
  if cikd_weight < 0:
    raise ValueError(f"cikd_weight must be >= 0, got {cikd_weight}")
  total, cikd_total, metrics, teacher = None, jnp.zeros((), jnp.float32), {}, None
  for i, c in enumerate(configs):
    outputs, feats = apply_fn(c)
    losses = task_losses_fn(outputs)
    metrics[f"task_loss/config{i}"] = losses
    total = losses if total is None else total + losses
    if i == 0:
      teacher = feats
    elif cikd_weight > 0:
      cikd_total = cikd_total + cikd_loss(feats, teacher, mask, normalize=cikd_normalize)
  metrics["cikd"] = cikd_total
  return total + cikd_weight * cikd_total / total.shape[0], metrics
