"""Slimmable layers: the width is chosen at call time and the weights are *sliced*.

A narrow call uses the leading `in x out` block of the full kernel, so a sub-network really computes less
(there is no masking of a full-width computation). Parameters are created at full width on `init`; their
stored shape is the full shape, and every call slices a prefix of it.

Widths are static Python floats (they change array shapes): a jitted step compiles once per width
configuration. The allowed multipliers are a config list such as (0.25, 0.5, 0.75, 1.0).

Normalization is per-sample (no batch statistics, so no switchable BatchNorm is needed):
  * `SlimLayerNorm` over the active channels (scale/bias sliced),
  * `SlimGroupNorm` with a fixed *group size*: a width-w map has C_w / group_size groups, which are exactly
    the first groups of the full-width map, so a narrow network normalizes its channels as the wide one does.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl.nn import partitioning

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)

default_kernel_init = nn.initializers.lecun_normal()


def check_width(width: float, allowed: Sequence[float]) -> float:
  """Returns `width` as a float if it is one of `allowed` (all in (0, 1]); raises ValueError otherwise."""
  if isinstance(width, jax.core.Tracer):
    raise ValueError("width must be a static Python float (it sets array shapes), got a traced value")
  allowed = tuple(float(a) for a in allowed)
  if not allowed or any(not 0.0 < a <= 1.0 for a in allowed):
    raise ValueError(f"allowed widths must be a non-empty list of values in (0, 1], got {allowed}")
  w = float(width)
  if not any(math.isclose(w, a, rel_tol=0, abs_tol=1e-9) for a in allowed):
    raise ValueError(f"width {width!r} is not one of the allowed widths {allowed}")
  return w


def scale_channels(full: int, width: float, divisor: int = 1) -> int:
  """Active channels for multiplier `width`: ceil(width * full) rounded up to a multiple of `divisor`.

  The result is clipped to [divisor, full] (and to `full` when full < divisor). Width 1.0 gives `full`.
  """
  if full < 1 or divisor < 1:
    raise ValueError(f"full channels and divisor must be >= 1, got full={full}, divisor={divisor}")
  if not 0.0 < width <= 1.0:
    raise ValueError(f"width must be in (0, 1], got {width}")
  c = math.ceil(width * full - 1e-9)
  c = divisor * math.ceil(c / divisor)
  return int(min(max(c, divisor), full))


def sliceable_param(module: nn.Module, name: str, init_fn, shape: tuple[int, ...],
                    axes: Sequence[str | None] | None = None) -> jnp.ndarray:
  """`module.param(name, init_fn, shape)` on init; afterwards the stored (full-width) value as is.

  Flax checks a stored parameter's shape against `shape`; a slimmable layer called at a narrow width
  asks for a smaller shape, so once the parameter exists it is read without that check. `axes` names each
  dimension for sharding (mtl/nn/partitioning.py). A width slice of a sharded dimension reads a leading block
  that may sit on fewer devices than the whole: XLA gathers it where needed, so results are unchanged and only
  the communication differs (tests/train/test_sharded_init.py).
  """
  if module.has_variable("params", name):
    value = nn.meta.unbox(module.get_variable("params", name))
    if value.ndim != len(shape):
      raise ValueError(f"{module.name}/{name}: stored rank {value.ndim} != expected rank {len(shape)}")
    return value
  if axes is not None:
    if len(axes) != len(shape):
      raise ValueError(f"{module.name}/{name}: {len(axes)} axis names for a parameter of rank {len(shape)}")
    init_fn = partitioning.logical(init_fn, axes)
  return module.param(name, init_fn, shape)


def _check_in(name: str, active: int, stored: int):
  if active > stored:
    raise ValueError(f"{name}: input has {active} channels but the layer was initialized with {stored}; "
                     "initialize the model at full width (1.0)")


class SlimDense(nn.Module):
  """Dense layer with sliceable input and output features.

  Attributes:
    features: full output features. The full input features are taken from the input on `init`.

  Call: `x [..., C_in_active] -> [..., out_features]`, with `out_features <= features` (None: full).
  """
  features: int
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = default_kernel_init
  dtype: jnp.dtype | None = None
  kernel_axes: tuple[str | None, str | None] = ("embed", "mlp")

  @nn.compact
  def __call__(self, x: jnp.ndarray, out_features: int | None = None) -> jnp.ndarray:
    out = self.features if out_features is None else int(out_features)
    if not 0 < out <= self.features:
      raise ValueError(f"SlimDense: out_features must be in [1, {self.features}], got {out}")
    c_in = x.shape[-1]
    kernel = sliceable_param(self, "kernel", self.kernel_init, (c_in, self.features), self.kernel_axes)
    _check_in("SlimDense", c_in, kernel.shape[0])
    dtype = self.dtype or x.dtype
    y = jnp.dot(x.astype(dtype), kernel[:c_in, :out].astype(dtype))
    if self.use_bias:
      bias = sliceable_param(self, "bias", nn.initializers.zeros, (self.features,), self.kernel_axes[-1:])
      y = y + bias[:out].astype(dtype)
    return y


class SlimConv(nn.Module):
  """2-D convolution (NHWC, 'SAME' padding) with sliceable input and output channels; `kernel_dilation` > 1 is an
  atrous convolution.

  Call: `x [B, H, W, C_in_active] -> [B, H', W', out_features]`.
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = "SAME"
  kernel_dilation: tuple[int, int] = (1, 1)
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = default_kernel_init
  dtype: jnp.dtype | None = None
  kernel_axes: tuple[str | None, str | None] = ("embed", "mlp")  # (input, output) channels

  @nn.compact
  def __call__(self, x: jnp.ndarray, out_features: int | None = None) -> jnp.ndarray:
    if x.ndim != 4:
      raise ValueError(f"SlimConv expects [B, H, W, C], got shape {x.shape}")
    out = self.features if out_features is None else int(out_features)
    if not 0 < out <= self.features:
      raise ValueError(f"SlimConv: out_features must be in [1, {self.features}], got {out}")
    c_in = x.shape[-1]
    kernel = sliceable_param(self, "kernel", self.kernel_init, (*self.kernel_size, c_in, self.features),
                             (None, None, *self.kernel_axes))
    _check_in("SlimConv", c_in, kernel.shape[2])
    dtype = self.dtype or x.dtype
    y = jax.lax.conv_general_dilated(
        x.astype(dtype), kernel[:, :, :c_in, :out].astype(dtype), window_strides=self.strides,
        padding=self.padding, rhs_dilation=tuple(self.kernel_dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = sliceable_param(self, "bias", nn.initializers.zeros, (self.features,), self.kernel_axes[-1:])
      y = y + bias[:out].astype(dtype)
    return y


class SlimLayerNorm(nn.Module):
  """LayerNorm over the active (leading) channels of the last axis; scale and bias are sliced."""
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    scale = sliceable_param(self, "scale", nn.initializers.ones, (c,), ("norm",))
    bias = sliceable_param(self, "bias", nn.initializers.zeros, (c,), ("norm",))
    _check_in("SlimLayerNorm", c, scale.shape[0])
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale[:c] + bias[:c]).astype(x.dtype)


class SlimGroupNorm(nn.Module):
  """GroupNorm with a fixed group size (channels per group) for NHWC maps.

  The active channel count must be a multiple of `group_size`; a narrow map's groups are the first groups
  of the full map, so the statistics of each group do not depend on the width.
  """
  group_size: int = 8
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    gs = min(self.group_size, c)
    if c % gs:
      raise ValueError(f"SlimGroupNorm: {c} channels is not a multiple of group_size {self.group_size}")
    scale = sliceable_param(self, "scale", nn.initializers.ones, (c,), ("norm",))
    bias = sliceable_param(self, "bias", nn.initializers.zeros, (c,), ("norm",))
    _check_in("SlimGroupNorm", c, scale.shape[0])
    x32 = x.astype(jnp.float32)
    g = x32.reshape(*x.shape[:-1], c // gs, gs)
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    mean = jnp.mean(g, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
    y = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
    return (y * scale[:c] + bias[:c]).astype(x.dtype)


class SlimSelfAttention(nn.Module):
  """Multi-head softmax self-attention whose *heads* are sliced; the head dimension is fixed.

  Attributes:
    num_heads: full number of heads.
    head_dim: per-head dimension (the same at every width).

  Call: `x [B, L, D_active] -> [B, L, out_features]` using the first `active_heads` heads.
  Kernels: query/key/value [D_full, H, head_dim], out [H, head_dim, D_full]; a narrow call slices
  [:D_active, :active_heads] and [:active_heads, :, :out_features].
  """
  num_heads: int
  head_dim: int
  kernel_init: nn.initializers.Initializer = default_kernel_init
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, active_heads: int | None = None,
               out_features: int | None = None) -> jnp.ndarray:
    if x.ndim != 3:
      raise ValueError(f"SlimSelfAttention expects [B, L, D], got shape {x.shape}")
    h = self.num_heads if active_heads is None else int(active_heads)
    if not 0 < h <= self.num_heads:
      raise ValueError(f"SlimSelfAttention: active_heads must be in [1, {self.num_heads}], got {h}")
    c_in = x.shape[-1]
    dtype = self.dtype or x.dtype
    x = x.astype(dtype)

    def proj(name):
      k = sliceable_param(self, f"{name}_kernel", self.kernel_init, (c_in, self.num_heads, self.head_dim),
                          ("embed", "heads", "kv"))
      b = sliceable_param(self, f"{name}_bias", nn.initializers.zeros, (self.num_heads, self.head_dim),
                          ("heads", "kv"))
      _check_in("SlimSelfAttention", c_in, k.shape[0])
      return jnp.einsum("bld,dnh->blnh", x, k[:c_in, :h].astype(dtype)) + b[:h].astype(dtype)

    q, k, v = proj("query"), proj("key"), proj("value")
    o = jax.nn.dot_product_attention(q, k, v)  # [B, L, h, head_dim]
    out_kernel = sliceable_param(self, "out_kernel", self.kernel_init, (self.num_heads, self.head_dim, c_in),
                                 ("heads", "kv", "embed"))
    out_bias = sliceable_param(self, "out_bias", nn.initializers.zeros, (out_kernel.shape[-1],), ("embed",))
    out = out_kernel.shape[-1] if out_features is None else int(out_features)
    if not 0 < out <= out_kernel.shape[-1]:
      raise ValueError(f"SlimSelfAttention: out_features must be in [1, {out_kernel.shape[-1]}], got {out}")
    return jnp.einsum("blnh,nhd->bld", o, out_kernel[:h, :, :out].astype(dtype)) + out_bias[:out].astype(dtype)
