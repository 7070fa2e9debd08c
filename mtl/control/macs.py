"""Exact multiply-accumulate (MAC) counts of a slimmed multi-task model.

Convention: MACs of matrix products and convolutions only (dense layers, convs, attention QK^T and AV,
the bilinear-upsampling matmuls of dense heads), per example; normalization, activations, softmax and
bias additions are not MACs. FLOPs ~= 2 * MACs + elementwise work.

Two independent counters:
  * `count_macs(model, config, input_shape)` - closed-form per layer, from the module attributes and
    the active widths (no tracing; cheap enough for a search over thousands of configs);
  * `traced_macs(fn, *args)` - walks the jaxpr of any function and sums dot_general / conv MACs;
    used to check the closed form and as a fallback for mixers without a formula.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from mtl.control.widths import WidthConfig
from mtl.models import encoders as enc_lib
from mtl.models import heads as head_lib


def _conv_out(size: int, stride: int, kernel: int, padding: str) -> int:
  if padding == "SAME":
    return -(-size // stride)
  return (size - kernel) // stride + 1


def conv_taps(size: int, kernel: int, stride: int, padding: str | tuple[int, int],
              count_padding: bool = True) -> int:
  """Sum over output positions of the kernel taps along one spatial axis.

  With count_padding, every output position uses all `kernel` taps (the usual convention: padded
  zeros are multiplied too); without it, only taps that land inside the input count (XLA's
  HloCostAnalysis convention).
  """
  if isinstance(padding, str):
    out = _conv_out(size, stride, kernel, padding)
    lo = max((out - 1) * stride + kernel - size, 0) // 2 if padding == "SAME" else 0
  else:
    lo, hi = padding
    out = (size + lo + hi - kernel) // stride + 1
  if count_padding:
    return out * kernel
  return sum(sum(1 for j in range(kernel) if 0 <= i * stride - lo + j < size) for i in range(out))


def encoder_macs(encoder: Any, width: float, input_shape: tuple[int, ...], count_padding: bool = True
                 ) -> tuple[int, tuple[int, ...]]:
  """(MACs per example, feature shape without batch) of an encoder at `width`.

  input_shape: one example's shape, e.g. (H, W, C) or (F,). count_padding: see `conv_taps`.
  """
  if isinstance(encoder, enc_lib.ConvEncoder):
    if len(input_shape) != 3:
      raise ValueError(f"ConvEncoder needs input_shape (H, W, C), got {input_shape}")
    encoder._validate()  # pylint: disable=protected-access
    h, w, c = input_shape
    total = 0
    for cout in encoder.active_channels(width):
      for j in range(encoder.convs_per_stage):
        s = 2 if j == 0 else 1
        taps = conv_taps(h, 3, s, "SAME", count_padding) * conv_taps(w, 3, s, "SAME", count_padding)
        h, w = _conv_out(h, s, 3, "SAME"), _conv_out(w, s, 3, "SAME")
        total += taps * c * cout
        c = cout
    return total, (h, w, c)
  if isinstance(encoder, enc_lib.ViTEncoder):
    if len(input_shape) != 3:
      raise ValueError(f"ViTEncoder needs input_shape (H, W, C), got {input_shape}")
    encoder._validate()  # pylint: disable=protected-access
    if encoder.mixer != "softmax":
      raise ValueError(f"no closed-form MACs for mixer {encoder.mixer!r}; use traced_macs")
    hh, ww, c = input_shape
    p = encoder.patch_size
    n = (hh // p) * (ww // p)
    _, d, mlp = encoder.active_dims(width)
    total = n * p * p * c * d
    per_block = 4 * n * d * d + 2 * n * n * d + 2 * n * d * mlp
    return total + encoder.depth * per_block, (n, d)
  if isinstance(encoder, enc_lib.MLPEncoder):
    if len(input_shape) != 1:
      raise ValueError(f"MLPEncoder needs input_shape (F,), got {input_shape}")
    total, f = 0, input_shape[0]
    for h in encoder.active_dims(width):
      total += f * h
      f = h
    return total, (f,)
  raise ValueError(f"no MAC formula for encoder type {type(encoder).__name__}")


def head_macs(head: Any, width: float, feature_shape: tuple[int, ...], count_padding: bool = True) -> int:
  """MACs per example of a head at `width` fed with features of shape `feature_shape` (no batch)."""
  c_in = feature_shape[-1]
  if isinstance(head, head_lib.ClassificationHead):
    hid = head.active_hidden(width)
    return c_in * hid + hid * head.num_outputs
  if isinstance(head, head_lib.DenseHead):
    if len(feature_shape) == 2:
      side = math.isqrt(feature_shape[0])
      if side * side != feature_shape[0]:
        raise ValueError(f"dense head: {feature_shape[0]} tokens do not form a square grid")
      h = w = side
    elif len(feature_shape) == 3:
      h, w = feature_shape[:2]
    else:
      raise ValueError(f"dense head needs map or token features, got feature shape {feature_shape}")
    hid = head.active_hidden(width)
    oh, ow = head.out_hw
    taps0 = conv_taps(h, 3, 1, "SAME", count_padding) * conv_taps(w, 3, 1, "SAME", count_padding)
    taps1 = conv_taps(oh, 3, 1, "SAME", count_padding) * conv_taps(ow, 3, 1, "SAME", count_padding)
    return (taps0 * c_in * hid + oh * h * w * hid + oh * ow * w * hid + taps1 * hid * hid
            + oh * ow * hid * head.num_outputs)
  raise ValueError(f"no MAC formula for head type {type(head).__name__}")


def count_macs(model: Any, config: WidthConfig, input_shape: tuple[int, ...], count_padding: bool = True
               ) -> dict[str, int]:
  """Closed-form MACs per example of `MultiTaskModel` `model` at width `config`.

  count_padding: count conv taps on padded zeros (default, the usual convention); False matches XLA.

  Returns: {'encoder': n, 'head/<task>': n, ..., 'total': n} (Python ints).
  """
  if sorted(config.head_widths) != sorted(model.heads):
    raise ValueError(f"config heads {sorted(config.head_widths)} != model heads {sorted(model.heads)}")
  enc, feat_shape = encoder_macs(model.encoder, config.encoder, tuple(input_shape), count_padding)
  out = {"encoder": enc}
  for name, head in model.heads.items():
    out[f"head/{name}"] = head_macs(head, config.head_widths[name], feat_shape, count_padding)
  out["total"] = sum(out.values())
  return out


def count_macs_from_config(model_cfg: ml_collections.ConfigDict, tasks: tuple, config: WidthConfig,
                           input_shape: tuple[int, ...]) -> dict[str, int]:
  """`count_macs` for the model that `mtl.models.multitask.build_model(model_cfg, tasks, ...)` builds."""
  from mtl.models.multitask import build_model  # pylint: disable=g-import-not-at-top
  return count_macs(build_model(model_cfg, tasks, tuple(input_shape)), config, input_shape)


def macs_ratio(model: Any, config: WidthConfig, input_shape: tuple[int, ...]) -> float:
  """total MACs of `config` / total MACs at full width (all widths 1.0)."""
  full = WidthConfig.create(1.0, {t: 1.0 for t in model.heads})
  return count_macs(model, config, input_shape)["total"] / count_macs(model, full, input_shape)["total"]


# ---------------------------------------------------------------------------------------------------
# Traced counter.

def _eqn_macs(eqn, count_padding: bool = True) -> int:
  name = eqn.primitive.name
  if name == "dot_general":
    (lc, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs[i] for i in lc]))
  if name == "conv_general_dilated":
    dn = eqn.params["dimension_numbers"]
    lhs, rhs, out = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
    if any(d != 1 for d in tuple(eqn.params["lhs_dilation"]) + tuple(eqn.params["rhs_dilation"])):
      raise ValueError("traced_macs: dilated convolutions are not supported")
    taps = 1
    for i, (pad, stride) in enumerate(zip(eqn.params["padding"], eqn.params["window_strides"])):
      taps *= conv_taps(lhs[dn.lhs_spec[2 + i]], rhs[dn.rhs_spec[2 + i]], stride, tuple(pad), count_padding)
    batch_out = out[dn.out_spec[0]] * out[dn.out_spec[1]]  # batch x output channels
    return batch_out * taps * rhs[dn.rhs_spec[1]]
  return 0


def _sub_jaxprs(eqn):
  for v in eqn.params.values():
    vals = v if isinstance(v, (tuple, list)) else (v,)
    for x in vals:
      if isinstance(x, jax.extend.core.ClosedJaxpr):
        yield x.jaxpr
      elif isinstance(x, jax.extend.core.Jaxpr):
        yield x


def jaxpr_macs(jaxpr, count_padding: bool = True) -> int:
  """MACs of dot_general / conv_general_dilated in a jaxpr, recursing into sub-jaxprs.

  scan bodies count `length` times; `cond` counts its most expensive branch; `while` raises (unknown
  trip count).
  """
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "while":
      raise ValueError("traced_macs: cannot count a while loop (unknown number of iterations)")
    if name == "cond":
      total += max(jaxpr_macs(b.jaxpr, count_padding) for b in eqn.params["branches"])
      continue
    sub = sum(jaxpr_macs(j, count_padding) for j in _sub_jaxprs(eqn))
    if name == "scan":
      sub *= int(eqn.params["length"])
    total += _eqn_macs(eqn, count_padding) + sub
  return total


def traced_macs(fn: Callable, *args, count_padding: bool = True) -> int:
  """MACs of `fn(*args)` (all examples in the batch) counted from its jaxpr."""
  return jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr, count_padding)


def xla_dot_conv_flops(fn: Callable, *args) -> float:
  """XLA's cost-analysis FLOPs of each dot_general / conv in `fn`'s jaxpr, each compiled on its own, summed.

  An independent check of the MAC counters: equals 2 * traced_macs(..., count_padding=False).
  """
  total = 0.0

  def visit(jaxpr):
    nonlocal total
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
        avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
        f = jax.jit(lambda *a, eqn=eqn: eqn.primitive.bind(*a, **eqn.params))
        total += f.lower(*avals).compile().cost_analysis()["flops"]
      for j in _sub_jaxprs(eqn):
        visit(j)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return total
