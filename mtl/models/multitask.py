"""A shared encoder with one head per task, and the config -> model factory."""
from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtl.models.encoders import build_encoder
from mtl.models.heads import build_head, hidden_mask
from mtl.models.registry import MODELS
from mtl.nn import partitioning
from mtl.tasks.base import TaskSpec


class MultiTaskModel(nn.Module):
  """Shared encoder + per-task heads.

  Attributes:
    encoder: module mapping inputs to shared features; called as `encoder(x, width=..., train=...)`.
    heads: task name -> head module; called as `head(features, width=..., train=...)`.
  """
  encoder: nn.Module
  heads: Mapping[str, nn.Module]

  def __call__(self, x: jnp.ndarray, *, train: bool = False, encoder_width: float = 1.0,
               head_widths: Mapping[str, float] | None = None, return_features: bool = False,
               head_masks: Mapping[str, jnp.ndarray] | None = None
               ) -> dict[str, jnp.ndarray] | tuple[dict[str, jnp.ndarray], jnp.ndarray]:
    """Args: x [B, ...] inputs; widths in (0, 1] pick slimmed sub-networks (1.0 = full width); `head_masks`
    (task -> [hidden_dim] 0/1, possibly traced) run those heads at full width with their hidden units masked,
    equal to the sliced heads at the masks' widths (training; see `head_mask_tables`).

    Returns: task name -> outputs (e.g. logits [B, C]); with `return_features`, also the shared features.
    """
    features = self.encode(x, train=train, encoder_width=encoder_width)
    outputs = self.decode(features, train=train, head_widths=head_widths, head_masks=head_masks)
    return (outputs, features) if return_features else outputs

  def encode(self, x: jnp.ndarray, *, train: bool = False, encoder_width: float = 1.0) -> jnp.ndarray:
    """Shared features of inputs x [B, ...] (use with `apply(..., method='encode')`), constrained to stay split
    over the batch axes of the mesh when traced under `mtl.sharding.activation_rules`."""
    features = self.encoder(x, width=encoder_width, train=train)
    return partitioning.constrain(features, ("batch",) + (None,) * (features.ndim - 1))

  def decode(self, features: jnp.ndarray, *, train: bool = False,
             head_widths: Mapping[str, float] | None = None,
             head_masks: Mapping[str, jnp.ndarray] | None = None) -> dict[str, jnp.ndarray]:
    """Task outputs from shared features (use with `apply(..., method='decode')`)."""
    head_widths, head_masks = dict(head_widths or {}), dict(head_masks or {})
    unknown = (set(head_widths) | set(head_masks)) - set(self.heads)
    if unknown:
      raise ValueError(f"head widths given for unknown tasks {sorted(unknown)}; tasks: {sorted(self.heads)}")
    both = set(head_widths) & set(head_masks)
    if both:
      raise ValueError(f"tasks {sorted(both)} have both a head width and a head mask; give one")
    return {name: head(features, width=head_widths.get(name, 1.0), train=train,
                       **({"mask": head_masks[name]} if name in head_masks else {}))
            for name, head in self.heads.items()}

  def head_mask_tables(self, widths: tuple[float, ...]) -> dict[str, np.ndarray]:
    """task -> float32 [len(widths), hidden_dim]: row i is the hidden-unit mask of that head at widths[i]."""
    return {name: np.stack([hidden_mask(head, w) for w in widths]) for name, head in self.heads.items()}


@MODELS.register("multitask")
def build_multitask(model_cfg: ml_collections.ConfigDict, tasks: tuple[TaskSpec, ...],
                    input_shape: tuple[int, ...], mesh: jax.sharding.Mesh | None = None) -> MultiTaskModel:
  """Shared encoder (`model_cfg.encoder`, ENCODERS) + one head per task (`model_cfg.head`, HEADS)."""
  del mesh
  out_hw = tuple(input_shape[:2]) if len(input_shape) == 3 else None
  heads = {t.name: build_head(t, model_cfg.head, out_hw=out_hw) for t in tasks}
  return MultiTaskModel(encoder=build_encoder(model_cfg.encoder), heads=heads)


def build_model(model_cfg: ml_collections.ConfigDict, tasks: tuple[TaskSpec, ...],
                input_shape: tuple[int, ...], mesh: jax.sharding.Mesh | None = None) -> nn.Module:
  """Model from `config.model`: `name` registered in `MODELS` (default 'multitask') plus its sub-configs.

  Args:
    model_cfg: `config.model` with the model's sub-configs (see configs/).
    tasks: the tasks to predict, one head each.
    input_shape: example shape without batch, e.g. (36, 36, 1); dense heads predict at its H, W.
    mesh: the training mesh; models that place computation on its axes (expert-parallel MoE layers) use it.
  """
  return MODELS.get(model_cfg.get("name", "multitask"))(model_cfg, tasks, tuple(input_shape), mesh=mesh)


