"""Slimmable encoders: a width-w call is exactly the narrower encoder on the leading slices of the weights."""
import importlib.util

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models import encoders


def random_variables(module, *args, seed=0, scale=0.3, **kw):
  """Variables with the shapes `module.init` would create, filled with numpy normals (no init compile)."""
  shapes = jax.eval_shape(lambda k: module.init(k, *args, **kw), jax.random.PRNGKey(0))
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.randn(*s.shape), s.dtype), shapes)


def _slice_like(big, small):
  """Leading slices of `big` with the shapes of `small` (prefix slicing along every axis)."""
  return jax.tree.map(lambda b, s: b[tuple(slice(0, n) for n in s.shape)], big, small)


def _apply(module, v, x, **kw):
  return jax.jit(lambda v, x: module.apply(v, x, **kw))(v, x)


def _check_sub_network(wide, narrow, x, width):
  v = random_variables(wide, x)
  v_small = jax.eval_shape(narrow.init, jax.random.PRNGKey(1), x)
  y = _apply(wide, v, x, width=width)
  ref = _apply(narrow, _slice_like(v, v_small), x, width=1.0)
  assert y.shape == ref.shape
  np.testing.assert_allclose(y, ref, rtol=2e-4, atol=2e-5)
  return v, y


def test_conv_encoder_sub_network_and_shapes():
  x = np.random.RandomState(0).randn(2, 12, 12, 1).astype(np.float32)
  wide = encoders.ConvEncoder(stage_channels=(16, 32), convs_per_stage=2)
  narrow = encoders.ConvEncoder(stage_channels=(8, 16), convs_per_stage=2)
  v, y = _check_sub_network(wide, narrow, x, 0.5)
  assert y.shape == (2, 3, 3, 16)
  assert jax.eval_shape(lambda: wide.apply(v, x)).shape == (2, 3, 3, 32)
  assert jax.eval_shape(lambda: wide.apply(v, x, width=0.25)).shape == (2, 3, 3, 8)
  with pytest.raises(ValueError, match="allowed widths"):
    jax.eval_shape(lambda: wide.apply(v, x, width=0.3))
  with pytest.raises(ValueError, match="multiples of group_size"):
    jax.eval_shape(encoders.ConvEncoder(stage_channels=(12,)).init, jax.random.PRNGKey(0), x)


def test_vit_encoder_sub_network_and_shapes():
  x = np.random.RandomState(1).randn(2, 8, 8, 3).astype(np.float32)
  wide = encoders.ViTEncoder(patch_size=4, dim=16, depth=2, num_heads=4, mlp_ratio=2.0)
  narrow = encoders.ViTEncoder(patch_size=4, dim=8, depth=2, num_heads=2, mlp_ratio=2.0)
  v, y = _check_sub_network(wide, narrow, x, 0.5)
  assert y.shape == (2, 4, 8)
  assert jax.eval_shape(lambda: wide.apply(v, x)).shape == (2, 4, 16)
  assert wide.active_dims(0.25) == (1, 4, 8)
  with pytest.raises(ValueError, match="multiple of patch_size"):
    jax.eval_shape(lambda: wide.apply(v, x[:, :6, :6]))
  with pytest.raises(ValueError, match="unknown mixer"):
    jax.eval_shape(encoders.ViTEncoder(mixer="nope").init, jax.random.PRNGKey(0), x)


@pytest.mark.skipif(importlib.util.find_spec("mtl.nn.lightning") is None, reason="no mtl.nn.lightning")
def test_vit_lightning_mixer_runs_every_width_with_switchable_mixers():
  x = np.random.RandomState(3).randn(2, 8, 8, 1).astype(np.float32)
  enc = encoders.ViTEncoder(patch_size=4, dim=16, depth=1, num_heads=4, mixer="lightning", widths=(0.5, 1.0))
  v = random_variables(enc, x, scale=0.2)
  assert set(v["params"]["block0_attn"]) == {"heads2", "heads4"}
  y = _apply(enc, v, x)
  assert y.shape == (2, 4, 16) and np.all(np.isfinite(y))
  # The narrow call uses only the 2-head mixer: changing the 4-head mixer's weights leaves it unchanged.
  run = jax.jit(lambda v: enc.apply(v, x, width=0.5))
  y = run(v)
  assert y.shape == (2, 4, 8) and np.all(np.isfinite(y))
  v2 = jax.tree.map(lambda a: a, v)
  v2["params"]["block0_attn"]["heads4"] = jax.tree.map(lambda a: a + 1.0, v["params"]["block0_attn"]["heads4"])
  np.testing.assert_array_equal(run(v2), y)
  v2["params"]["block0_attn"]["heads2"] = jax.tree.map(lambda a: a + 1.0, v["params"]["block0_attn"]["heads2"])
  assert not np.allclose(run(v2), y)


def test_mlp_encoder_sub_network():
  x = np.random.RandomState(2).randn(4, 103).astype(np.float32)
  wide = encoders.MLPEncoder(hidden_dims=(64, 32))
  narrow = encoders.MLPEncoder(hidden_dims=(16, 8))
  _, y = _check_sub_network(wide, narrow, x, 0.25)
  assert y.shape == (4, 8)
  with pytest.raises(ValueError, match=r"\[B, F\]"):
    jax.eval_shape(wide.init, jax.random.PRNGKey(0), x[:, None])


def test_build_encoder():
  cfg = ml_collections.ConfigDict({"name": "conv", "stage_channels": [8, 16], "widths": [0.5, 1.0]})
  enc = encoders.build_encoder(cfg)
  assert isinstance(enc, encoders.ConvEncoder) and enc.stage_channels == (8, 16) and enc.widths == (0.5, 1.0)
  assert isinstance(encoders.build_encoder(ml_collections.ConfigDict({"name": "vit"})), encoders.ViTEncoder)
  assert isinstance(encoders.build_encoder(ml_collections.ConfigDict({"name": "resnet", "depth": 34})),
                    encoders.ResNetEncoder)
  with pytest.raises(ValueError, match="unknown encoder 'no_such_encoder'; known: conv, mlp, resnet, vit"):
    encoders.build_encoder(ml_collections.ConfigDict({"name": "no_such_encoder"}))
  with pytest.raises(ValueError, match="bad arguments"):
    encoders.build_encoder(ml_collections.ConfigDict({"name": "mlp", "depth": 3}))


def test_real_init_creates_full_width_params():
  x = np.ones((2, 10), np.float32)
  y, v = jax.jit(encoders.MLPEncoder(hidden_dims=(16,)).init_with_output)(jax.random.PRNGKey(0), x)
  assert v["params"]["dense0"]["kernel"].shape == (10, 16) and y.shape == (2, 16)
  assert np.all(np.isfinite(y)) and np.std(np.asarray(v["params"]["dense0"]["kernel"])) > 0.05
