"""Pretrained weights from generated files with the real key names / shapes (timm ResNet-18 safetensors,
big_vision ViT-Ti/16 .npz), checked against plain float64 numpy forward passes written here."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models import pretrained
from mtl.models.encoders import ViTEncoder
from mtl.models.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNetEncoder

RNG = np.random.default_rng(0)


def _template(enc, x):
  """Parameter shapes only (the loaders fill every leaf), without running an init."""
  return jax.eval_shape(lambda: enc.init(jax.random.PRNGKey(0), jnp.asarray(x)))["params"]


def _apply(enc, params, x, width=1.0):
  return np.asarray(jax.jit(lambda p, x: enc.apply({"params": p}, x, width=width))(params, jnp.asarray(x)))[0]


# ------------------------------------------------------------------------------------------ ResNet reference
def _conv(x, w, stride=1, pad=0, dil=1):
  """x [C, H, W], w [O, I, kh, kw] (PyTorch semantics) in float64."""
  _, h, wd = x.shape
  _, _, kh, kw = w.shape
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
  ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
  wo = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
  cols = np.stack([np.stack([xp[:, a * dil:a * dil + stride * (ho - 1) + 1:stride,
                                b * dil:b * dil + stride * (wo - 1) + 1:stride] for b in range(kw)], 1)
                   for a in range(kh)], 1)  # [I, kh, kw, ho, wo]
  return np.einsum("oiab,iabhw->ohw", w, cols)


def _bn(x, t, name):
  s = t[f"{name}.weight"] / np.sqrt(t[f"{name}.running_var"] + 1e-5)
  return x * s[:, None, None] + (t[f"{name}.bias"] - t[f"{name}.running_mean"] * s)[:, None, None]


def _resnet_ref(image, t, depths=(2, 2, 2, 2), output_stride=32):
  x = ((image - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
  x = np.maximum(_bn(_conv(x, t["conv1.weight"], 2, 3), t, "bn1"), 0)
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  ho, wo = (x.shape[1] - 1) // 2 + 1, (x.shape[2] - 1) // 2 + 1
  windows = [xp[:, a:a + 2 * (ho - 1) + 1:2, b:b + 2 * (wo - 1) + 1:2] for a in range(3) for b in range(3)]
  x = np.max(np.stack(windows), 0)
  sd = {32: ((1, 1), (2, 1), (2, 1), (2, 1)), 16: ((1, 1), (2, 1), (2, 1), (1, 2)),
        8: ((1, 1), (2, 1), (1, 2), (1, 4))}[output_stride]
  prev = 1
  for i, n in enumerate(depths):
    stride, dil = sd[i]
    for j in range(n):
      p, s = f"layer{i + 1}.{j}", stride if j == 0 else 1
      d0 = prev
      y = np.maximum(_bn(_conv(x, t[f"{p}.conv1.weight"], s, d0, d0), t, f"{p}.bn1"), 0)
      y = _bn(_conv(y, t[f"{p}.conv2.weight"], 1, dil, dil), t, f"{p}.bn2")
      if f"{p}.downsample.0.weight" in t:
        x = _bn(_conv(x, t[f"{p}.downsample.0.weight"], s), t, f"{p}.downsample.1")
      x = np.maximum(x + y, 0)
      prev = dil
  return x.transpose(1, 2, 0)


def timm_resnet18(rng):
  """A state dict with timm's resnet18 key names and shapes (random values, BatchNorm statistics included)."""
  t = {}

  def conv(name, o, i, k):
    t[f"{name}.weight"] = (rng.normal(size=(o, i, k, k)) * math.sqrt(2.0 / (i * k * k))).astype(np.float32)

  def bn(name, c):
    t[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    t[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
    t[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
    t[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    t[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)
  conv("conv1", 64, 3, 7)
  bn("bn1", 64)
  c_in = 64
  for i, c in enumerate((64, 128, 256, 512)):
    for j in range(2):
      p = f"layer{i + 1}.{j}"
      conv(f"{p}.conv1", c, c_in if j == 0 else c, 3)
      bn(f"{p}.bn1", c)
      conv(f"{p}.conv2", c, c, 3)
      bn(f"{p}.bn2", c)
      if j == 0 and i > 0:
        conv(f"{p}.downsample.0", c, c_in, 1)
        bn(f"{p}.downsample.1", c)
    c_in = c
  t["fc.weight"] = rng.normal(size=(1000, 512)).astype(np.float32) * 0.01
  t["fc.bias"] = np.zeros(1000, np.float32)
  return t


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
  from safetensors.numpy import save_file
  t = timm_resnet18(np.random.default_rng(1))
  path = str(tmp_path_factory.mktemp("timm") / "resnet18.safetensors")
  save_file(t, path)
  return path, {k: v.astype(np.float64) for k, v in t.items()}


def _narrow(t, frac):
  """The reference network at a width: leading output / input channels of every tensor (image channels kept)."""
  out = {}
  for k, v in t.items():
    if v.ndim == 4:
      o, i = v.shape[:2]
      out[k] = v[:int(o * frac), :(i if i == 3 else int(i * frac))]
    elif v.ndim == 1:
      out[k] = v[:int(len(v) * frac)]
  return out


@pytest.mark.parametrize("output_stride", [16, 8])
def test_timm_resnet18_matches_reference_at_full_and_half_width(resnet_file, output_stride):
  path, t = resnet_file
  enc = ResNetEncoder(depth=18, output_stride=output_stride, norm="affine", pixel_mean=IMAGENET_MEAN,
                      pixel_std=IMAGENET_STD, widths=(0.5, 1.0))
  x = RNG.uniform(size=(1, 32, 40, 3)).astype(np.float32)
  params = pretrained.load_timm_resnet(path, _template(enc, x), enc)
  for width in (1.0, 0.5):
    got = _apply(enc, params, x, width)
    want = _resnet_ref(x[0].astype(np.float64), t if width == 1.0 else _narrow(t, width), output_stride=output_stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max(), rtol=0)


def test_a_narrower_model_takes_the_checkpoints_leading_channels(resnet_file):
  path, t = resnet_file
  enc = ResNetEncoder(depth=18, output_stride=32, norm="affine", pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD,
                      stem_channels=32, stage_channels=(32, 64, 128, 256))
  x = RNG.uniform(size=(1, 32, 32, 3)).astype(np.float32)
  params = pretrained.load_timm_resnet(path, _template(enc, x), enc)
  got = _apply(enc, params, x)
  want = _resnet_ref(x[0].astype(np.float64), _narrow(t, 0.5))
  np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max(), rtol=0)


def test_resnet_loader_errors_name_the_problem(resnet_file, tmp_path):
  path, t = resnet_file
  x = jnp.zeros((1, 32, 32, 3))
  enc = ResNetEncoder(depth=18, norm="group")
  with pytest.raises(pretrained.PretrainedError, match="norm='affine'"):
    pretrained.load_timm_resnet(path, _template(enc, x), enc)
  enc = ResNetEncoder(depth=18, norm="affine")
  with pytest.raises(pretrained.PretrainedError, match="ImageNet input normalisation"):
    pretrained.load_timm_resnet(path, _template(enc, x), enc)
  enc = ResNetEncoder(depth=34, norm="affine", pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD)
  with pytest.raises(pretrained.PretrainedError, match="lacks 'layer1.2.conv1"):
    pretrained.load_timm_resnet(path, _template(enc, x), enc)
  enc = ResNetEncoder(depth=18, norm="affine", pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD,
                      stage_channels=(64, 128, 256, 1024))
  with pytest.raises(pretrained.PretrainedError, match=r"layer4_0/bn1/bias: checkpoint shape \(512,\) cannot fill"):
    pretrained.load_timm_resnet(path, _template(enc, x), enc)


# ------------------------------------------------------------------------------------------ big_vision ViT
def big_vision_vit_ti16(rng, grid=14, scanned=False):
  """ViT-Ti/16 (D 192, 3 heads, 12 blocks, MLP 768) in big_vision's .npz layout (random values), with a head."""
  d, h, hd, m, depth = 192, 3, 64, 768, 12
  w = {"params/embedding/kernel": rng.normal(0, 0.05, (16, 16, 3, d)), "params/embedding/bias": rng.normal(0, 0.1, d),
       "params/pos_embedding": rng.normal(0, 0.1, (1, grid * grid, d)),
       "params/Transformer/encoder_norm/scale": rng.uniform(0.5, 1.5, d),
       "params/Transformer/encoder_norm/bias": rng.normal(0, 0.1, d),
       "params/head/kernel": rng.normal(0, 0.01, (d, 1000)), "params/head/bias": np.zeros(1000)}
  blocks = []
  for _ in range(depth):
    b = {"LayerNorm_0/scale": rng.uniform(0.5, 1.5, d), "LayerNorm_0/bias": rng.normal(0, 0.1, d),
         "LayerNorm_1/scale": rng.uniform(0.5, 1.5, d), "LayerNorm_1/bias": rng.normal(0, 0.1, d),
         "MlpBlock_0/Dense_0/kernel": rng.normal(0, d ** -0.5, (d, m)), "MlpBlock_0/Dense_0/bias": rng.normal(0, .1, m),
         "MlpBlock_0/Dense_1/kernel": rng.normal(0, m ** -0.5, (m, d)), "MlpBlock_0/Dense_1/bias": rng.normal(0, .1, d)}
    for p in ("query", "key", "value"):
      b[f"MultiHeadDotProductAttention_0/{p}/kernel"] = rng.normal(0, d ** -0.5, (d, h, hd))
      b[f"MultiHeadDotProductAttention_0/{p}/bias"] = rng.normal(0, 0.1, (h, hd))
    b["MultiHeadDotProductAttention_0/out/kernel"] = rng.normal(0, d ** -0.5, (h, hd, d))
    b["MultiHeadDotProductAttention_0/out/bias"] = rng.normal(0, 0.1, d)
    blocks.append(b)
  if scanned:
    for k in blocks[0]:
      w[f"params/Transformer/encoderblock/{k}"] = np.stack([b[k] for b in blocks])
  else:
    for i, b in enumerate(blocks):
      for k, v in b.items():
        w[f"params/Transformer/encoderblock_{i}/{k}"] = v
  return {k: np.asarray(v, np.float32) for k, v in w.items()}


def _ln(x, s, b):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6) * s + b


def _vit_ref(image, w, depth=12, p=16):
  g = lambda k: w[f"params/{k}"].astype(np.float64)  # noqa: E731
  x = image * 2.0 - 1.0  # big_vision's input range.
  hh, ww = x.shape[0] // p, x.shape[1] // p
  patches = x.reshape(hh, p, ww, p, 3).transpose(0, 2, 1, 3, 4).reshape(hh * ww, -1)
  t = patches @ g("embedding/kernel").reshape(-1, 192) + g("embedding/bias") + g("pos_embedding")[0]
  for i in range(depth):
    b = f"Transformer/encoderblock_{i}/"
    y = _ln(t, g(b + "LayerNorm_0/scale"), g(b + "LayerNorm_0/bias"))
    q, k, v = (np.einsum("ld,dnh->lnh", y, g(b + f"MultiHeadDotProductAttention_0/{n}/kernel")) +
               g(b + f"MultiHeadDotProductAttention_0/{n}/bias") for n in ("query", "key", "value"))
    logits = np.einsum("lnh,mnh->nlm", q, k) / math.sqrt(q.shape[-1])
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("nlm,mnh->lnh", a, v)
    t = t + np.einsum("lnh,nhd->ld", o, g(b + "MultiHeadDotProductAttention_0/out/kernel")) + g(
        b + "MultiHeadDotProductAttention_0/out/bias")
    y = _ln(t, g(b + "LayerNorm_1/scale"), g(b + "LayerNorm_1/bias"))
    hdn = y @ g(b + "MlpBlock_0/Dense_0/kernel") + g(b + "MlpBlock_0/Dense_0/bias")
    hdn = 0.5 * hdn * (1 + np.tanh(math.sqrt(2 / math.pi) * (hdn + 0.044715 * hdn ** 3)))  # flax's gelu.
    t = t + hdn @ g(b + "MlpBlock_0/Dense_1/kernel") + g(b + "MlpBlock_0/Dense_1/bias")
  return _ln(t, g("Transformer/encoder_norm/scale"), g("Transformer/encoder_norm/bias"))


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
  d = tmp_path_factory.mktemp("bv")
  w = big_vision_vit_ti16(np.random.default_rng(2), grid=4)
  np.savez(d / "vit.npz", **w)
  np.savez(d / "vit_scan.npz", **big_vision_vit_ti16(np.random.default_rng(2), grid=4, scanned=True))
  return str(d / "vit.npz"), str(d / "vit_scan.npz"), w


def test_big_vision_vit_ti16_matches_reference_with_folded_input_range(vit_files):
  path, path_scan, w = vit_files
  enc = ViTEncoder(patch_size=16, dim=192, depth=12, num_heads=3, mlp_ratio=4.0)
  x = RNG.uniform(size=(1, 64, 64, 3)).astype(np.float32)
  init = _template(enc, x)
  params = pretrained.load_big_vision_vit(path, init, enc, (64, 64))
  got = _apply(enc, params, x)
  want = _vit_ref(x[0].astype(np.float64), w)
  np.testing.assert_allclose(got, want, atol=3e-4, rtol=0)
  scanned = pretrained.load_big_vision_vit(path_scan, init, enc, (64, 64))
  jax.tree_util.tree_map(np.testing.assert_array_equal, scanned, params)
  # A narrower fixed-width ViT (2 of the 3 heads, MLP 512) takes the leading heads / units.
  small = ViTEncoder(patch_size=16, dim=128, depth=2, num_heads=2, mlp_ratio=4.0)
  sp = pretrained.load_big_vision_vit(path, _template(small, x), small, (64, 64))
  np.testing.assert_array_equal(sp["block1_attn"]["query_kernel"],
                                w["params/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel"][
                                    :128, :2])


def test_posemb_resampling_is_half_pixel_bilinear():
  pos = np.arange(4, dtype=np.float32).reshape(1, 4, 1)  # 2x2 grid [[0, 1], [2, 3]]
  out = pretrained.resample_posemb(pos, (4, 4))[0, :, 0].reshape(4, 4)
  ax = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)  # source coordinate of each output pixel.
  np.testing.assert_allclose(out, 2 * ax[:, None] + ax[None, :], atol=1e-6)


def test_vit_loader_errors(vit_files, tmp_path):
  path = vit_files[0]
  x = jnp.zeros((1, 64, 64, 3))
  enc = ViTEncoder(patch_size=8, dim=192, depth=2, num_heads=3)
  with pytest.raises(pretrained.PretrainedError, match="patch size"):
    pretrained.load_big_vision_vit(path, _template(enc, x), enc, (64, 64))
  enc = ViTEncoder(patch_size=16, dim=192, depth=13, num_heads=3)
  with pytest.raises(pretrained.PretrainedError, match="12 transformer blocks"):
    pretrained.load_big_vision_vit(path, _template(enc, x), enc, (64, 64))
  with pytest.raises(pretrained.PretrainedError, match="not found"):
    pretrained.load_big_vision_vit(str(tmp_path / "nope.npz"), {}, enc, (64, 64))


def test_config_without_path_but_with_format_is_an_error():
  cfg = ml_collections.ConfigDict({"pretrained": {"path": "", "format": "timm_resnet"}})
  with pytest.raises(ValueError, match="no effect"):
    pretrained.apply_pretrained({"encoder": {}}, cfg, None, (32, 32, 3))
