"""Slimmable ResNet-18 / ResNet-34 (basic blocks) with output stride 32, 16 or 8 (dilated last stages, as in
DeepLab), the backbone family of the controllable-MTL paper (Aich et al., ICCV 2023) for dense prediction.

Called as `encoder(x, width=1.0, train=False)`: x [B, H, W, 3] in [0, 1] -> feature map
[B, ceil(H / s), ceil(W / s), C_w], s = output_stride, C_w = scale_channels(512, width, 8). A width keeps the
leading channels of every conv (mtl/nn/slimmable.py), so a narrow network is a slice of the full one.

Normalisation: 'group' (GroupNorm with 8 channels per group: per-sample, for training from scratch) or 'affine'
(a per-channel scale and bias: the frozen-statistics form of BatchNorm that ImageNet weights are loaded into, see
mtl/models/pretrained.py; the affine stays trainable). `pixel_mean` / `pixel_std` normalise the input first
(ImageNet's for timm weights).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.nn import slimmable
from mtl.nn.slimmable import DEFAULT_WIDTHS, SlimConv, SlimGroupNorm, sliceable_param

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
NORMS = ("group", "affine")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SlimAffine(nn.Module):
  """y = x * scale + bias per channel (leading channels at narrow widths)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    scale = sliceable_param(self, "scale", nn.initializers.ones, (c,))
    bias = sliceable_param(self, "bias", nn.initializers.zeros, (c,))
    if c > scale.shape[0]:
      raise ValueError(f"SlimAffine: {c} channels but initialized with {scale.shape[0]}")
    return x * scale[:c].astype(x.dtype) + bias[:c].astype(x.dtype)


def _norm(kind: str, name: str) -> nn.Module:
  return SlimGroupNorm(8, name=name) if kind == "group" else SlimAffine(name=name)


def _pad(p: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((p, p), (p, p))


class BasicBlock(nn.Module):
  """conv3x3(stride, first_dilation) -> norm -> relu -> conv3x3(dilation) -> norm, plus the shortcut (1x1 conv +
  norm when projecting); relu. Symmetric padding = dilation, as in timm / PyTorch (not XLA's 'SAME')."""
  features: int
  strides: int = 1
  dilation: int = 1
  first_dilation: int = 1
  project: bool = False
  norm: str = "group"

  @nn.compact
  def __call__(self, x: jnp.ndarray, active: int) -> jnp.ndarray:
    d0, d = self.first_dilation, self.dilation
    s = (self.strides, self.strides)
    y = SlimConv(self.features, (3, 3), s, padding=_pad(d0), kernel_dilation=(d0, d0), use_bias=False,
                 name="conv1")(x, active)
    y = nn.relu(_norm(self.norm, "bn1")(y))
    y = SlimConv(self.features, (3, 3), padding=_pad(d), kernel_dilation=(d, d), use_bias=False,
                 name="conv2")(y, active)
    y = _norm(self.norm, "bn2")(y)
    if self.project:
      x = SlimConv(self.features, (1, 1), s, padding="VALID", use_bias=False, name="downsample_conv")(x, active)
      x = _norm(self.norm, "downsample_bn")(x)
    return nn.relu(x + y)


class ResNetEncoder(nn.Module):
  """Attributes: depth (18 or 34), output_stride (8, 16, 32), norm ('group' | 'affine'), widths, pixel_mean /
  pixel_std (the input is (x - mean) / std), stem_channels / stage_channels (full widths; ResNet's by default)."""
  depth: int = 18
  output_stride: int = 16
  norm: str = "group"
  widths: Sequence[float] = DEFAULT_WIDTHS
  pixel_mean: Sequence[float] = (0.0, 0.0, 0.0)
  pixel_std: Sequence[float] = (1.0, 1.0, 1.0)
  stem_channels: int = 64
  stage_channels: Sequence[int] = (64, 128, 256, 512)

  def _validate(self):
    if self.depth not in DEPTHS:
      raise ValueError(f"ResNetEncoder: depth must be one of {sorted(DEPTHS)}, got {self.depth}")
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"ResNetEncoder: output_stride must be 8, 16 or 32, got {self.output_stride}")
    if self.norm not in NORMS:
      raise ValueError(f"ResNetEncoder: norm must be one of {NORMS}, got {self.norm!r}")
    if len(self.stage_channels) != 4 or any(c % 8 for c in (self.stem_channels, *self.stage_channels)):
      raise ValueError(f"ResNetEncoder: need 4 stage widths, all channel counts multiples of 8; got "
                       f"{self.stem_channels}, {tuple(self.stage_channels)}")
    if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
      raise ValueError(f"ResNetEncoder: pixel_mean / pixel_std need 3 values (std > 0), got {self.pixel_mean}, "
                       f"{self.pixel_std}")

  def active_channels(self, width: float) -> tuple[int, ...]:
    """(stem, stage 1..4) active channels at `width`."""
    w = slimmable.check_width(width, self.widths)
    return tuple(slimmable.scale_channels(c, w, 8) for c in (self.stem_channels, *self.stage_channels))

  def strides_and_dilations(self) -> tuple[tuple[int, int], ...]:
    """(stride, dilation) of stages 1..4 for the output stride (timm's output_stride: the first block of a stage
  keeps the previous dilation in its first conv)."""
    if self.output_stride == 32:
      return ((1, 1), (2, 1), (2, 1), (2, 1))
    if self.output_stride == 16:
      return ((1, 1), (2, 1), (2, 1), (1, 2))
    return ((1, 1), (2, 1), (1, 2), (1, 4))

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, width: float = 1.0, train: bool = False) -> jnp.ndarray:
    del train  # no dropout / batch statistics.
    self._validate()
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"ResNetEncoder expects images [B, H, W, 3], got shape {x.shape}")
    stem, *stages = self.active_channels(width)
    x = (x - jnp.asarray(self.pixel_mean, x.dtype)) / jnp.asarray(self.pixel_std, x.dtype)
    x = SlimConv(self.stem_channels, (7, 7), (2, 2), padding=_pad(3), use_bias=False, name="conv1")(x, stem)
    x = nn.relu(_norm(self.norm, "bn1")(x))
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                              ((0, 0), (1, 1), (1, 1), (0, 0)))
    full_in, prev_dil = self.stem_channels, 1
    for i, (blocks, full, active, (stride, dil)) in enumerate(zip(
        DEPTHS[self.depth], self.stage_channels, stages, self.strides_and_dilations())):
      for j in range(blocks):
        s = stride if j == 0 else 1
        x = BasicBlock(full, s, dil, prev_dil, project=(j == 0 and (s != 1 or full_in != full)), norm=self.norm,
                       name=f"layer{i + 1}_{j}")(x, active)
        full_in, prev_dil = full, dil
    return x
