"""Pretrained encoder weights from local files, mapped into the slimmable encoders.

  * ViT in big_vision's .npz layout (flattened 'params/embedding/kernel', 'params/pos_embedding',
    'params/Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_0/{query,key,value,out},
    LayerNorm_1, MlpBlock_0/Dense_{0,1}}', 'params/Transformer/encoder_norm'; also the scanned
    'Transformer/encoderblock/...' form with a leading layer axis, the 'params/img/' prefix of two-tower models and
    the original vision_transformer names (posembed_input, MultiHeadDotProductAttention_1, LayerNorm_2,
    MlpBlock_3)) -> `ViTEncoder` (softmax mixer). big_vision feeds images in [-1, 1]; mtl's are in [0, 1], so the
    patch embedding is folded exactly: kernel' = 2 kernel, bias' = bias - sum(kernel). The position embedding is
    resampled bilinearly (jax.image.resize, as big_vision's resample_posemb) when the token grid differs; a class
    token and its position, and the classifier head, are dropped.
  * ResNet in timm's safetensors layout ('conv1.weight' [O, I, kh, kw], 'bn1.{weight,bias,running_mean,running_var}',
    'layer{1..4}.{j}.{conv1,bn1,conv2,bn2}', 'layer{k}.0.downsample.{0,1}', 'fc.*') -> `ResNetEncoder(norm='affine')`:
    convs transposed to HWIO, each BatchNorm folded into scale = weight / sqrt(running_var + 1e-5), bias = bias -
    running_mean * scale. The encoder must normalise inputs with ImageNet's mean / std (timm's default config).

A checkpoint wider than the model fills it with its leading channels / heads / hidden units (a fixed-width
baseline narrower than the pretrained network); narrower widths of a slimmable model are slices of the loaded full
width. Missing keys and too-small arrays raise `PretrainedError` naming the key and the shapes.

Config: config.model.pretrained = {'path': FILE, 'format': 'big_vision_vit' | 'timm_resnet'}; the loop loads it
into params['encoder'] after initialisation (a checkpoint restored on resume overrides it).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ("big_vision_vit", "timm_resnet")
BN_EPS = 1e-5


class PretrainedError(ValueError):
  """A pretrained file is missing, lacks a key, or does not fit the model; the message names it."""


def fit(value: np.ndarray, target_shape: tuple, what: str) -> np.ndarray:
  """The leading slice of `value` with `target_shape` (same rank, every dimension at least as large)."""
  value = np.asarray(value)
  if value.ndim != len(target_shape) or any(v < t for v, t in zip(value.shape, target_shape)):
    raise PretrainedError(f"{what}: checkpoint shape {value.shape} cannot fill the model's {tuple(target_shape)} "
                          f"(same rank and at least as large in every dimension needed)")
  return np.ascontiguousarray(value[tuple(slice(0, t) for t in target_shape)])


def _fill(target: Any, source: Mapping[str, np.ndarray], path: str = "") -> Any:
  """Returns `target` (nested dict of arrays, or of arrays boxed with logical axis names, which are unboxed) with
  every leaf replaced by `source['a/b/c']`, fitted to its shape."""
  if not path:
    target = nn.meta.unbox(target)
  if isinstance(target, Mapping):
    return {k: _fill(v, source, f"{path}/{k}" if path else k) for k, v in target.items()}
  if path not in source:
    raise PretrainedError(f"no pretrained value for encoder parameter {path!r} (the mapping covers "
                          f"{sorted(source)[:6]}...)")
  return jnp.asarray(fit(source[path], target.shape, path), target.dtype)


# ------------------------------------------------------------------------------------------ big_vision ViT
def _vit_prefix(keys) -> tuple[str, bool]:
  for prefix in ("params/img/", "params/", "opt/target/", ""):
    if f"{prefix}embedding/kernel" in keys:
      return prefix, f"{prefix}pos_embedding" in keys or f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in keys
  raise PretrainedError("not a ViT checkpoint: no 'embedding/kernel' under the prefixes 'params/img/', 'params/', "
                        "'opt/target/' or ''")


def resample_posemb(pos: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
  """[1, g*g, D] (square source grid) -> [1, gh*gw, D] by bilinear resizing (antialiased when shrinking)."""
  n, d = pos.shape[1], pos.shape[2]
  g = int(round(np.sqrt(n)))
  if g * g != n:
    raise PretrainedError(f"pos_embedding has {n} positions, not a square grid")
  if (g, g) == tuple(grid):
    return pos
  out = jax.image.resize(jnp.asarray(pos[0].reshape(g, g, d), jnp.float32), (*grid, d), "bilinear")
  return np.asarray(out).reshape(1, grid[0] * grid[1], d)


def vit_source(npz: Mapping[str, np.ndarray], depth: int, grid: tuple[int, int]) -> dict[str, np.ndarray]:
  """big_vision key -> mtl ViTEncoder parameter path ('block0_attn/query_kernel', ...), values converted."""
  prefix, big_vision = _vit_prefix(npz.keys())
  mha, ln2, mlp = (0, 1, 0) if big_vision else (1, 2, 3)
  scanned = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in npz

  def get(key, layer=None):
    full = f"{prefix}{key}"
    if full not in npz:
      raise PretrainedError(f"checkpoint lacks {full!r}")
    v = np.asarray(npz[full], np.float32)
    return v[layer] if layer is not None else v
  kernel = get("embedding/kernel")
  out = {"embed/kernel": 2.0 * kernel, "embed/bias": get("embedding/bias") - kernel.sum(axis=(0, 1, 2)),
         "final_norm/scale": get("Transformer/encoder_norm/scale"),
         "final_norm/bias": get("Transformer/encoder_norm/bias")}
  pos = get("pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding")
  if f"{prefix}cls" in npz and int(round(np.sqrt(pos.shape[1] - 1))) ** 2 == pos.shape[1] - 1:
    pos = pos[:, 1:]  # the class token's position (vision_transformer layout).
  out["pos_embedding"] = resample_posemb(pos, grid)
  block0 = f"{prefix}Transformer/encoderblock_"
  n_layers = (npz[f"{prefix}Transformer/encoderblock/LayerNorm_0/scale"].shape[0] if scanned else
              sum(1 for k in npz if k.startswith(block0) and k.endswith("LayerNorm_0/scale")))
  if n_layers < depth:
    raise PretrainedError(f"checkpoint has {n_layers} transformer blocks, the model {depth}")
  for i in range(depth):
    blk, layer = ("Transformer/encoderblock/", i) if scanned else (f"Transformer/encoderblock_{i}/", None)
    for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", f"LayerNorm_{ln2}")):
      for p in ("scale", "bias"):
        out[f"block{i}_{ours}/{p}"] = get(f"{blk}{theirs}/{p}", layer)
    for proj in ("query", "key", "value", "out"):
      for p in ("kernel", "bias"):
        out[f"block{i}_attn/{proj}_{p}"] = get(f"{blk}MultiHeadDotProductAttention_{mha}/{proj}/{p}", layer)
    for ours, theirs in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
      for p in ("kernel", "bias"):
        out[f"block{i}_mlp/{ours}/{p}"] = get(f"{blk}MlpBlock_{mlp}/{theirs}/{p}", layer)
  return out


def load_big_vision_vit(path: str, encoder_params: Any, encoder, input_hw: tuple[int, int]) -> Any:
  """Encoder params of a `ViTEncoder` filled from a big_vision .npz file."""
  if getattr(encoder, "mixer", "softmax") != "softmax":
    raise PretrainedError(f"big_vision ViT weights need mixer='softmax', the encoder has {encoder.mixer!r}")
  npz = _open_npz(path)
  kernel = npz[_vit_prefix(npz.keys())[0] + "embedding/kernel"]
  if kernel.shape[:2] != (encoder.patch_size, encoder.patch_size):
    raise PretrainedError(f"{path}: patch size {kernel.shape[:2]} != the encoder's patch_size {encoder.patch_size}")
  grid = (input_hw[0] // encoder.patch_size, input_hw[1] // encoder.patch_size)
  return _fill(encoder_params, vit_source(npz, encoder.depth, grid))


def _open_npz(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise PretrainedError(f"pretrained file not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except Exception as e:
    raise PretrainedError(f"{path}: cannot read as a .npz archive ({e})") from e


# ------------------------------------------------------------------------------------------ timm ResNet
def resnet_source(tensors: Mapping[str, np.ndarray], depths: tuple[int, ...]) -> dict[str, np.ndarray]:
  """timm key -> mtl ResNetEncoder parameter path, convs HWIO, BatchNorms folded."""
  def get(key):
    if key not in tensors:
      raise PretrainedError(f"checkpoint lacks {key!r}")
    return np.asarray(tensors[key], np.float64)
  out = {}

  def conv(ours, theirs):
    w = get(f"{theirs}.weight")
    if w.ndim != 4:
      raise PretrainedError(f"{theirs}.weight: expected a conv kernel [O, I, kh, kw], got shape {w.shape}")
    out[f"{ours}/kernel"] = w.transpose(2, 3, 1, 0).astype(np.float32)

  def bn(ours, theirs):
    scale = get(f"{theirs}.weight") / np.sqrt(get(f"{theirs}.running_var") + BN_EPS)
    out[f"{ours}/scale"] = scale.astype(np.float32)
    out[f"{ours}/bias"] = (get(f"{theirs}.bias") - get(f"{theirs}.running_mean") * scale).astype(np.float32)
  conv("conv1", "conv1")
  bn("bn1", "bn1")
  for i, blocks in enumerate(depths):
    for j in range(blocks):
      o, t = f"layer{i + 1}_{j}", f"layer{i + 1}.{j}"
      conv(f"{o}/conv1", f"{t}.conv1")
      bn(f"{o}/bn1", f"{t}.bn1")
      conv(f"{o}/conv2", f"{t}.conv2")
      bn(f"{o}/bn2", f"{t}.bn2")
      if f"{t}.downsample.0.weight" in tensors:
        conv(f"{o}/downsample_conv", f"{t}.downsample.0")
        bn(f"{o}/downsample_bn", f"{t}.downsample.1")
  return out


def load_timm_resnet(path: str, encoder_params: Any, encoder) -> Any:
  """Encoder params of a `ResNetEncoder(norm='affine')` filled from a timm safetensors file."""
  from mtl.models.resnet import DEPTHS, IMAGENET_MEAN, IMAGENET_STD  # pylint: disable=g-import-not-at-top
  if encoder.norm != "affine":
    raise PretrainedError(f"timm ResNet weights carry BatchNorm statistics: the encoder needs norm='affine', not "
                          f"{encoder.norm!r}")
  if not (np.allclose(encoder.pixel_mean, IMAGENET_MEAN) and np.allclose(encoder.pixel_std, IMAGENET_STD)):
    raise PretrainedError(f"timm ResNet weights expect ImageNet input normalisation: set pixel_mean={IMAGENET_MEAN} "
                          f"and pixel_std={IMAGENET_STD} (got {tuple(encoder.pixel_mean)}, {tuple(encoder.pixel_std)})")
  if not os.path.isfile(path):
    raise PretrainedError(f"pretrained file not found: {path}")
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    tensors = load_file(path)
  except Exception as e:
    raise PretrainedError(f"{path}: cannot read as a safetensors file ({e})") from e
  return _fill(encoder_params, resnet_source(tensors, DEPTHS[encoder.depth]))


def apply_pretrained(params: Any, model_cfg, encoder, input_shape: tuple[int, ...]) -> Any:
  """`params` with params['encoder'] loaded from config.model.pretrained (unchanged when no path is set)."""
  cfg = model_cfg.get("pretrained") or {}
  path, fmt = cfg.get("path", ""), cfg.get("format", "")
  if not path:
    if fmt:
      raise ValueError(f"config.model.pretrained.format={fmt!r} has no effect without config.model.pretrained.path")
    return params
  if fmt not in FORMATS:
    raise ValueError(f"config.model.pretrained.format must be one of {FORMATS}, got {fmt!r}")
  if "encoder" not in params:
    raise ValueError(f"pretrained weights need a model with an 'encoder' (params have {sorted(params)})")
  params = dict(params)
  if fmt == "big_vision_vit":
    params["encoder"] = load_big_vision_vit(path, params["encoder"], encoder, tuple(input_shape[:2]))
  else:
    params["encoder"] = load_timm_resnet(path, params["encoder"], encoder)
  return params
