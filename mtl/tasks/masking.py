"""Masked reductions: a sample without a label for a task contributes nothing."""
from __future__ import annotations

import jax.numpy as jnp


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
  """Mean of `values` [B, ...] over samples with mask [B] == 1; 0 (not NaN) when nothing is labelled.

  Trailing axes of `values` (e.g. pixels) are averaged first, so each labelled sample weighs the same.
  """
  per_sample = values.reshape(values.shape[0], -1).mean(axis=1) if values.ndim > 1 else values
  if mask is None:
    return per_sample.mean()
  mask = mask.astype(per_sample.dtype)
  if mask.shape != per_sample.shape:
    raise ValueError(f"mask shape {mask.shape} does not match the batch {per_sample.shape}")
  total = jnp.sum(per_sample * mask)
  count = jnp.sum(mask)
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)


def sample_mask(mask: jnp.ndarray | None, batch_size: int, dtype=jnp.float32) -> jnp.ndarray:
  """Returns the [B] mask, all ones when the batch carries none."""
  if mask is None:
    return jnp.ones((batch_size,), dtype)
  return mask.astype(dtype)
