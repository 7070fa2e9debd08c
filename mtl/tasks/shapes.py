"""Shape checks shared by task kinds (`check_shapes(outputs_shape, targets_shape, num_outputs) -> problem | None`)."""
from __future__ import annotations


def single_channel_map(logits_shape: tuple, targets_shape: tuple, num_outputs: int) -> str | None:
  """One logit per pixel, logits [B, H, W, 1], against targets [B, H, W] (edges, boundaries, saliency)."""
  del num_outputs
  if len(logits_shape) != 4 or logits_shape[-1] != 1:
    return f"expected logits [B, H, W, 1], got {logits_shape}"
  if tuple(targets_shape) != tuple(logits_shape[:3]):
    return f"expected targets [B, H, W] = {logits_shape[:3]}, got {targets_shape}"
  return None
