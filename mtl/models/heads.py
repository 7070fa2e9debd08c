"""Slimmable task decoders: classification (global pooling + MLP) and dense (conv + upsampling).

Heads are called as `head(features, *, width=1.0, train=False)`. `width` slices the head's hidden
channels; the head's input channels follow whatever (possibly slimmed) encoder width it receives, by
slicing the leading rows of its first kernel. Initialize at encoder and head width 1.0.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtl.models.registry import HEADS
from mtl.nn import slimmable
from mtl.nn.slimmable import DEFAULT_WIDTHS, SlimConv, SlimDense, SlimGroupNorm
from mtl.tasks.base import TaskSpec



def pool_features(features: jnp.ndarray) -> jnp.ndarray:
  """[B, D] -> itself; tokens [B, N, D] -> mean over N; maps [B, h, w, C] -> mean over h, w."""
  if features.ndim == 2:
    return features
  if features.ndim == 3:
    return jnp.mean(features, axis=1)
  if features.ndim == 4:
    return jnp.mean(features, axis=(1, 2))
  raise ValueError(f"head expects features [B, D], [B, N, D] or [B, h, w, C], got shape {features.shape}")


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] bilinear interpolation weights (half-pixel centres, edge clamp, no antialiasing).

  Equals `jax.image.resize(..., 'bilinear')` along one axis when upsampling (out_size >= in_size).
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"bilinear_matrix: sizes must be >= 1, got {in_size} -> {out_size}")
  pos = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
  pos = np.clip(pos, 0, in_size - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = pos - lo
  m = np.zeros((out_size, in_size), np.float32)
  m[np.arange(out_size), lo] += 1 - frac
  m[np.arange(out_size), hi] += frac
  return m


def resize_bilinear(x: jnp.ndarray, out_hw: tuple[int, int]) -> jnp.ndarray:
  """[B, h, w, C] -> [B, H, W, C] by two separable matmuls (H*h*w*C + H*W*w*C MACs per example)."""
  mh = jnp.asarray(bilinear_matrix(x.shape[1], out_hw[0]), x.dtype)
  mw = jnp.asarray(bilinear_matrix(x.shape[2], out_hw[1]), x.dtype)
  x = jnp.einsum("Hh,bhwc->bHwc", mh, x)
  return jnp.einsum("Ww,bHwc->bHWc", mw, x)


def tokens_to_map(features: jnp.ndarray) -> jnp.ndarray:
  """Maps [B, h, w, C] -> itself; tokens [B, N, D] with square N -> [B, sqrt(N), sqrt(N), D]."""
  if features.ndim == 4:
    return features
  if features.ndim == 3:
    n = features.shape[1]
    side = math.isqrt(n)
    if side * side != n:
      raise ValueError(f"dense head: {n} tokens do not form a square grid")
    return features.reshape(features.shape[0], side, side, features.shape[2])
  raise ValueError(f"dense head expects a map [B, h, w, C] or tokens [B, N, D], got shape {features.shape}")


class ClassificationHead(nn.Module):
  """Pool -> Dense(hidden_w) -> ReLU -> Dense(num_outputs).

  Call: features [B, D] | [B, N, D] | [B, h, w, C] -> logits [B, num_outputs];
  hidden_w = scale_channels(hidden_dim, width, 8).
  """
  num_outputs: int
  hidden_dim: int = 128
  widths: Sequence[float] = DEFAULT_WIDTHS
  divisor: int = 8

  def active_hidden(self, width: float) -> int:
    w = slimmable.check_width(width, self.widths)
    return slimmable.scale_channels(self.hidden_dim, w, min(self.divisor, self.hidden_dim))

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, width: float = 1.0, train: bool = False,
               mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """`mask` [hidden_dim] (0/1, see `hidden_mask`): run at full width with the inactive hidden units zeroed,
    which equals the sliced call at the width whose mask it is (training a traced head width, no recompile)."""
    del train
    h = self.active_hidden(width) if mask is None else _check_mask(mask, width, self.hidden_dim)
    x = pool_features(features)
    x = nn.relu(SlimDense(self.hidden_dim, name="hidden")(x, h))
    if mask is not None:
      x = x * mask.astype(x.dtype)
    return SlimDense(self.num_outputs, name="out")(x)


class DenseHead(nn.Module):
  """Conv3x3(hidden_w) -> GN -> ReLU -> bilinear resize (`resize_bilinear`) to out_hw -> Conv3x3(hidden_w) -> GN -> ReLU
  -> Conv1x1(num_outputs).

  `private_output=True`: the last Conv1x1 is private to each width (parameters `out_private_kernel` [W,
  hidden_dim, num_outputs] and `out_private_bias` [W, num_outputs], one readout per entry of `widths`, like
  switchable batch norm in slimmable networks): the hidden layers stay shared and nested, but a width-w head
  reads its hidden units with its own weights instead of the leading rows of the full head's.

  Call: features [B, h, w, C] or square tokens [B, N, D] -> [B, out_hw[0], out_hw[1], num_outputs].
  """
  num_outputs: int
  hidden_dim: int = 64
  out_hw: tuple[int, int] = (32, 32)
  widths: Sequence[float] = DEFAULT_WIDTHS
  group_size: int = 8
  private_output: bool = False

  def active_hidden(self, width: float) -> int:
    w = slimmable.check_width(width, self.widths)
    if self.hidden_dim % self.group_size:
      raise ValueError(f"DenseHead: hidden_dim {self.hidden_dim} must be a multiple of group_size "
                       f"{self.group_size}")
    return slimmable.scale_channels(self.hidden_dim, w, self.group_size)

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, width: float = 1.0, train: bool = False,
               mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """`mask` [hidden_dim] (0/1, see `hidden_mask`): full-width channels with the inactive ones zeroed after each
    norm + ReLU. Active counts are multiples of group_size, so every GroupNorm group is wholly active or
    inactive and the result equals the sliced call at the mask's width."""
    del train
    if len(self.out_hw) != 2 or min(self.out_hw) < 1:
      raise ValueError(f"DenseHead: out_hw must be (H, W) with positive sizes, got {self.out_hw}")
    h = self.active_hidden(width) if mask is None else _check_mask(mask, width, self.hidden_dim)
    keep = (lambda y: y) if mask is None else (lambda y: y * mask.astype(y.dtype))
    x = tokens_to_map(features)
    x = keep(nn.relu(SlimGroupNorm(self.group_size, name="norm0")(SlimConv(self.hidden_dim, name="conv0")(x, h))))
    x = resize_bilinear(x, self.out_hw)
    x = keep(nn.relu(SlimGroupNorm(self.group_size, name="norm1")(SlimConv(self.hidden_dim, name="conv1")(x, h))))
    if not self.private_output:
      return SlimConv(self.num_outputs, (1, 1), name="out")(x)
    return self._private_readout(x, width, mask)

  def _private_readout(self, x: jnp.ndarray, width: float, mask: jnp.ndarray | None) -> jnp.ndarray:
    """x [B, H, W, active hidden] (sliced) or [B, H, W, hidden_dim] (masked) -> the readout of its width."""
    n = len(self.widths)
    active = [self.active_hidden(w) for w in self.widths]
    if len(set(active)) < n:
      raise ValueError(f"DenseHead(private_output=True): widths {tuple(self.widths)} give hidden sizes {active} "
                       f"(hidden_dim {self.hidden_dim}, group_size {self.group_size}); two widths with the same size "
                       "would share one network but not one readout")
    kernel = slimmable.sliceable_param(self, "out_private_kernel", nn.initializers.lecun_normal(batch_axis=0),
                                       (n, self.hidden_dim, self.num_outputs), (None, "mlp", None))
    bias = slimmable.sliceable_param(self, "out_private_bias", nn.initializers.zeros, (n, self.num_outputs),
                                     (None, None))
    if mask is None:
      index = list(self.widths).index(slimmable.check_width(width, self.widths))
      k, b = kernel[index, : x.shape[-1]], bias[index]
    else:  # the width is traced: its index from the mask's active count (each width's count is distinct)
      index = jnp.argmax(jnp.asarray(active, jnp.int32) == jnp.sum(mask > 0).astype(jnp.int32))
      k, b = kernel[index], bias[index]   # rows of inactive units meet zeros in x
    return jnp.einsum("bhwc,co->bhwo", x, k.astype(x.dtype)) + b.astype(x.dtype)


def _check_mask(mask: jnp.ndarray, width: float, hidden_dim: int) -> int:
  if width != 1.0:
    raise ValueError(f"a head called with a mask runs at full width (the mask sets the width), got width={width}")
  if mask.shape != (hidden_dim,):
    raise ValueError(f"head mask must have shape [{hidden_dim}] (hidden_dim), got {mask.shape}")
  return hidden_dim


def hidden_mask(head: nn.Module, width: float) -> np.ndarray:
  """float32 [hidden_dim]: 1 on the hidden units `head` keeps at `width` (its leading `active_hidden(width)`)."""
  if not (hasattr(head, "active_hidden") and hasattr(head, "hidden_dim")):
    raise ValueError(f"{type(head).__name__} has no slimmable hidden layer (active_hidden, hidden_dim), so its "
                     "width cannot be masked")
  return (np.arange(head.hidden_dim) < head.active_hidden(width)).astype(np.float32)


def _head_kwargs(spec: TaskSpec, cfg: ml_collections.ConfigDict, private_output_ok: bool = False) -> dict:
  kwargs = {"num_outputs": spec.num_outputs}
  if cfg.get("private_output"):
    if not private_output_ok:
      raise ValueError(f"model.head.private_output is for dense heads; task {spec.name!r} ({spec.kind}) has a "
                       "classification head")
    kwargs["private_output"] = True
  if cfg.get("hidden_dim") is not None:
    kwargs["hidden_dim"] = int(cfg.hidden_dim)
  if cfg.get("widths") is not None:
    kwargs["widths"] = tuple(float(w) for w in cfg.widths)
  return kwargs


@HEADS.register("classification")
def build_classification_head(spec: TaskSpec, cfg: ml_collections.ConfigDict,
                              out_hw: tuple[int, int] | None = None) -> ClassificationHead:
  """Pooled features -> logits [B, num_outputs] (keys of `cfg`: hidden_dim, widths)."""
  del out_hw
  return ClassificationHead(**_head_kwargs(spec, cfg))


@HEADS.register("dense")
def build_dense_head(spec: TaskSpec, cfg: ml_collections.ConfigDict,
                     out_hw: tuple[int, int] | None = None) -> DenseHead:
  """Feature map -> per-pixel outputs [B, H, W, num_outputs] at out_hw (keys of `cfg`: hidden_dim, widths,
  private_output)."""
  if out_hw is None:
    raise ValueError(f"task {spec.name!r} ({spec.kind}) needs a dense head: pass out_hw=(H, W)")
  return DenseHead(out_hw=tuple(int(s) for s in out_hw), **_head_kwargs(spec, cfg, private_output_ok=True))


def head_name(spec: TaskSpec, cfg: ml_collections.ConfigDict) -> str:
  """`cfg.name` if set, else the head family the task kind declares (`HEAD` in mtl/tasks/<kind>.py)."""
  from mtl import tasks as tasks_lib
  name = cfg.get("name") or getattr(tasks_lib.get_kind(spec.kind), "HEAD", None)
  if not name:
    raise ValueError(f"task {spec.name!r}: kind {spec.kind!r} declares no HEAD and config.model.head.name is "
                     f"not set; heads: {', '.join(HEADS.names())}")
  return name


def build_head(spec: TaskSpec, cfg: ml_collections.ConfigDict, out_hw: tuple[int, int] | None = None
               ) -> nn.Module:
  """Head for one task from `config.model.head` (keys: name, hidden_dim, optional widths); see `head_name`."""
  return HEADS.get(head_name(spec, cfg))(spec, cfg, out_hw)
