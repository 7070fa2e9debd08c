"""Slimmable shared encoders: conv (images), ViT (images) and MLP (tabular).

Every encoder is called as `encoder(x, *, width=1.0, train=False)`; `width` is a static multiplier from the
encoder's `widths` list and selects a sub-network whose weights are the leading slice of the full ones
(see mtl/nn/slimmable.py). Initialize at width 1.0. Normalization is per-sample (GroupNorm with a fixed
group size for conv maps, LayerNorm for tokens / vectors), so there is no batch state.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mtl.models.registry import ENCODERS
from mtl.models.resnet import ResNetEncoder
from mtl.nn import slimmable
from mtl.nn.slimmable import DEFAULT_WIDTHS, SlimConv, SlimDense, SlimGroupNorm, SlimLayerNorm

MIXERS = ("softmax", "lightning")


class ConvEncoder(nn.Module):
  """Stages of 3x3 convolutions; the first conv of each stage has stride 2.

  Attributes:
    stage_channels: full channels per stage (multiples of `group_size`).
    convs_per_stage: convolutions per stage (>= 1).
    group_size: channels per GroupNorm group; active channels are rounded up to a multiple of it.
    widths: allowed width multipliers.

  Call: x [B, H, W, C] -> feature map [B, H / 2^S, W / 2^S, C_w] (ceil division), with
  C_w = scale_channels(stage_channels[-1], width, group_size).
  """
  stage_channels: Sequence[int] = (32, 64, 128)
  convs_per_stage: int = 2
  group_size: int = 8
  widths: Sequence[float] = DEFAULT_WIDTHS

  def _validate(self):
    if not self.stage_channels or self.convs_per_stage < 1:
      raise ValueError(f"ConvEncoder needs >= 1 stage and convs_per_stage >= 1, got "
                       f"{self.stage_channels}, {self.convs_per_stage}")
    bad = [c for c in self.stage_channels if c % self.group_size]
    if bad:
      raise ValueError(f"ConvEncoder: stage_channels {tuple(self.stage_channels)} must be multiples of "
                       f"group_size {self.group_size}")

  def active_channels(self, width: float) -> tuple[int, ...]:
    """Active channels of every stage at `width`."""
    w = slimmable.check_width(width, self.widths)
    return tuple(slimmable.scale_channels(c, w, self.group_size) for c in self.stage_channels)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, width: float = 1.0, train: bool = False) -> jnp.ndarray:
    del train  # no dropout / batch statistics
    self._validate()
    if x.ndim != 4:
      raise ValueError(f"ConvEncoder expects images [B, H, W, C], got shape {x.shape}")
    for s, (full, c) in enumerate(zip(self.stage_channels, self.active_channels(width))):
      for j in range(self.convs_per_stage):
        x = SlimConv(full, (3, 3), (2, 2) if j == 0 else (1, 1), name=f"stage{s}_conv{j}")(x, c)
        x = nn.relu(SlimGroupNorm(self.group_size, name=f"stage{s}_norm{j}")(x))
    return x


class _MLPBlock(nn.Module):
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, x, hidden_active: int, out_active: int):
    y = SlimDense(self.hidden, name="fc1")(x, hidden_active)
    return SlimDense(self.dim, name="fc2")(nn.gelu(y), out_active)


class _LightningMixer(nn.Module):
  """Lightning attention at `active_heads` heads, one parameter set per allowed head count.

  `mtl.nn.lightning.LightningAttention` has fixed-shape projections, so the mixer is *switchable*
  (like switchable BatchNorm): each head count in `head_counts` owns its own LightningAttention, all of
  them created on `init`; a narrow call runs only its own (smaller) one.
  """
  head_counts: tuple[int, ...]
  head_dim: int

  @nn.compact
  def __call__(self, x, active_heads: int):
    try:
      from mtl.nn.lightning import LightningAttention  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError("mixer='lightning' needs mtl.nn.lightning.LightningAttention, which is not "
                       f"available ({e})") from e
    if active_heads not in self.head_counts:
      raise ValueError(f"lightning mixer: {active_heads} heads not in {self.head_counts}")
    if x.shape[-1] != active_heads * self.head_dim:
      raise ValueError(f"lightning mixer: width {x.shape[-1]} != {active_heads} heads x {self.head_dim}")
    mixers = {h: LightningAttention(num_heads=h, head_dim=self.head_dim, causal=False, name=f"heads{h}")
              for h in self.head_counts}
    if self.is_initializing():
      for h in self.head_counts:
        if h != active_heads and h * self.head_dim <= x.shape[-1]:
          mixers[h](x[..., :h * self.head_dim])
    return mixers[active_heads](x)


class ViTEncoder(nn.Module):
  """Pre-LN Vision Transformer without class token; slimmable embedding dim, heads and MLP width.

  Attributes:
    patch_size: square patch side (H and W must be multiples of it).
    dim: full embedding dim = num_heads * head_dim.
    depth: number of blocks.
    num_heads: full number of heads; a width keeps ceil(width * num_heads) heads of fixed head_dim,
      so the active dim is D_w = heads_w * dim / num_heads.
    mlp_ratio: full MLP hidden = int(dim * mlp_ratio), sliced to a multiple of 8.
    mixer: 'softmax' (slimmable heads, weights shared across widths) or 'lightning'
      (mtl.nn.lightning.LightningAttention; parameters kept per active head count, i.e. switchable rather
      than shared across widths; the other layers stay shared). No closed-form MACs for 'lightning':
      use mtl.control.macs.traced_macs.

  Call: x [B, H, W, C] -> tokens [B, (H/p)*(W/p), D_w], or with `spatial_output` the map [B, H/p, W/p, D_w]
  (what dense heads need when the token grid is not square).
  """
  patch_size: int = 4
  dim: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  mixer: str = "softmax"
  widths: Sequence[float] = DEFAULT_WIDTHS
  spatial_output: bool = False

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  def _validate(self):
    if self.num_heads < 1 or self.dim % self.num_heads:
      raise ValueError(f"ViTEncoder: dim {self.dim} must be a multiple of num_heads {self.num_heads}")
    if self.mixer not in MIXERS:
      raise ValueError(f"ViTEncoder: unknown mixer {self.mixer!r}; expected one of {MIXERS}")
    if self.depth < 1 or self.patch_size < 1 or self.mlp_ratio <= 0:
      raise ValueError(f"ViTEncoder: depth, patch_size, mlp_ratio must be positive, got "
                       f"{self.depth}, {self.patch_size}, {self.mlp_ratio}")

  def active_dims(self, width: float) -> tuple[int, int, int]:
    """(active heads, active dim, active MLP hidden) at `width`."""
    w = slimmable.check_width(width, self.widths)
    heads = slimmable.scale_channels(self.num_heads, w)
    mlp_full = int(self.dim * self.mlp_ratio)
    return heads, heads * self.head_dim, slimmable.scale_channels(mlp_full, w, min(8, mlp_full))

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, width: float = 1.0, train: bool = False) -> jnp.ndarray:
    del train
    self._validate()
    if x.ndim != 4:
      raise ValueError(f"ViTEncoder expects images [B, H, W, C], got shape {x.shape}")
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f"ViTEncoder: image size {x.shape[1:3]} is not a multiple of patch_size {p}")
    heads, d, mlp = self.active_dims(width)
    x = SlimConv(self.dim, (p, p), (p, p), padding="VALID", name="embed")(x, d)
    b, gh, gw, _ = x.shape
    x = x.reshape(b, gh * gw, d)
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, gh * gw, self.dim))
    if pos.shape[1] != gh * gw:
      raise ValueError(f"ViTEncoder: {gh * gw} tokens but the model was initialized with {pos.shape[1]}")
    x = x + pos[:, :, :d].astype(x.dtype)
    for i in range(self.depth):
      y = SlimLayerNorm(name=f"block{i}_norm1")(x)
      if self.mixer == "softmax":
        y = slimmable.SlimSelfAttention(self.num_heads, self.head_dim, name=f"block{i}_attn")(y, heads, d)
      else:
        counts = tuple(sorted({self.active_dims(w)[0] for w in self.widths}))
        y = _LightningMixer(counts, self.head_dim, name=f"block{i}_attn")(y, heads)
      x = x + y
      y = SlimLayerNorm(name=f"block{i}_norm2")(x)
      x = x + _MLPBlock(int(self.dim * self.mlp_ratio), self.dim, name=f"block{i}_mlp")(y, mlp, d)
    x = SlimLayerNorm(name="final_norm")(x)
    return x.reshape(b, gh, gw, d) if self.spatial_output else x


class MLPEncoder(nn.Module):
  """Dense -> LayerNorm -> ReLU layers for tabular inputs.

  Call: x [B, F] -> [B, D_w], D_w = scale_channels(hidden_dims[-1], width, 8).
  """
  hidden_dims: Sequence[int] = (256, 128)
  widths: Sequence[float] = DEFAULT_WIDTHS
  divisor: int = 8

  def active_dims(self, width: float) -> tuple[int, ...]:
    w = slimmable.check_width(width, self.widths)
    return tuple(slimmable.scale_channels(h, w, min(self.divisor, h)) for h in self.hidden_dims)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, width: float = 1.0, train: bool = False) -> jnp.ndarray:
    del train
    if not self.hidden_dims:
      raise ValueError("MLPEncoder needs at least one hidden dim")
    if x.ndim != 2:
      raise ValueError(f"MLPEncoder expects features [B, F], got shape {x.shape}")
    for i, (h, a) in enumerate(zip(self.hidden_dims, self.active_dims(width))):
      x = nn.relu(SlimLayerNorm(name=f"norm{i}")(SlimDense(h, name=f"dense{i}")(x, a)))
    return x


ENCODERS.register("conv", ConvEncoder)
ENCODERS.register("vit", ViTEncoder)
ENCODERS.register("mlp", MLPEncoder)
ENCODERS.register("resnet", ResNetEncoder)


def _kwargs(cfg: ml_collections.ConfigDict, skip: tuple[str, ...]) -> dict:
  d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k not in skip}


def build_encoder(cfg: ml_collections.ConfigDict) -> nn.Module:
  """Encoder from `config.model.encoder`: `name` registered in ENCODERS plus that class's attributes as keys."""
  name = cfg.get("name", "")
  encoder_cls = ENCODERS.get(name)
  kwargs = _kwargs(cfg, ("name",))
  try:
    return encoder_cls(**kwargs)
  except TypeError as e:
    raise ValueError(f"bad arguments for encoder {name!r}: {sorted(kwargs)} ({e})") from e
