"""Slimmable ResNet: output strides, widths, the norm choice and bad arguments (shapes only: fast)."""
import jax
import jax.numpy as jnp
import pytest

from mtl.models.resnet import ResNetEncoder


@pytest.mark.parametrize("depth,os_,width,want", [(18, 32, 1.0, (2, 3, 512)), (34, 16, 0.5, (4, 5, 256)),
                                                  (18, 8, 0.25, (8, 10, 128))])
def test_output_stride_and_width(depth, os_, width, want):
  enc = ResNetEncoder(depth=depth, output_stride=os_)
  x = jnp.zeros((2, 64, 80, 3))
  params = jax.eval_shape(lambda: enc.init(jax.random.PRNGKey(0), x))
  out = jax.eval_shape(lambda p: enc.apply(p, x, width=width), params)
  assert out.shape == (2,) + want
  n_blocks = sum(1 for k in params["params"] if k.startswith("layer"))
  assert n_blocks == {18: 8, 34: 16}[depth]


def test_group_norm_forward_is_finite_and_narrow_width_is_a_slice():
  enc = ResNetEncoder(depth=18, output_stride=16, stem_channels=16, stage_channels=(16, 16, 32, 32), widths=(0.5, 1.))
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 3))
  params = enc.init(jax.random.PRNGKey(0), x)
  full, half = enc.apply(params, x), enc.apply(params, x, width=0.5)
  assert bool(jnp.all(jnp.isfinite(full))) and half.shape[-1] == 16 and full.shape[-1] == 32


@pytest.mark.parametrize("kwargs,match", [({"depth": 50}, "depth"), ({"output_stride": 4}, "output_stride"),
                                          ({"norm": "batch"}, "norm"), ({"stage_channels": (64, 128, 256)}, "4 stage")])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ResNetEncoder(**kwargs).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
