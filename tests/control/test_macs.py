"""MAC counts: closed form == jaxpr count == XLA cost analysis (per dot/conv op), for several configs."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.control import macs
from mtl.control.widths import WidthConfig
from mtl.models.multitask import build_model
from mtl.tasks.base import TaskSpec


def random_variables(module, *args, seed=0, scale=0.3, **kw):
  """Variables with the shapes `module.init` would create, filled with numpy normals (no init compile)."""
  shapes = jax.eval_shape(lambda k: module.init(k, *args, **kw), jax.random.PRNGKey(0))
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.randn(*s.shape), s.dtype), shapes)

TASKS = (TaskSpec("cls", "classification", 10), TaskSpec("seg", "semseg", 3))


def _model(enc, shape, tasks=TASKS):
  cfg = ml_collections.ConfigDict(dict(name="multitask", encoder=enc,
                                       head=dict(hidden_dim=16, widths=(0.25, 0.5, 1.0))))
  m = build_model(cfg, tasks, shape)
  x = jnp.ones((2,) + shape)
  return m, random_variables(m, x), x


@pytest.mark.parametrize("enc,shape", [
    (dict(name="conv", stage_channels=(16, 32), widths=(0.25, 0.5, 1.0)), (15, 15, 1)),
    (dict(name="vit", patch_size=4, dim=32, depth=1, num_heads=4, widths=(0.25, 0.5, 1.0)), (16, 16, 2)),
])
def test_closed_form_matches_jaxpr_and_xla(enc, shape):
  m, v, x = _model(enc, shape)
  full = WidthConfig.create(1.0, {"cls": 1.0, "seg": 1.0})
  narrow = WidthConfig.create(0.5, {"cls": 0.25, "seg": 0.5})
  for c in (full, narrow):
    f = lambda v, x, c=c: m.apply(v, x, **c.apply_kwargs())
    for pad in (True, False):  # batch of 2
      assert 2 * macs.count_macs(m, c, shape, pad)["total"] == macs.traced_macs(f, v, x, count_padding=pad)
  assert macs.count_macs(m, narrow, shape)["total"] < macs.count_macs(m, full, shape)["total"] / 3
  # XLA, op by op (each dot / conv compiled alone): exactly 2 flops per in-bounds MAC.
  f = lambda v, x: m.apply(v, x, **narrow.apply_kwargs())
  exact = macs.count_macs(m, narrow, shape, count_padding=False)["total"]
  assert macs.xla_dot_conv_flops(f, v, x) == 2 * 2 * exact
  # Whole program: XLA also counts normalization / activation flops, so only a bracket.
  flops = jax.jit(f).lower(v, x).compile().cost_analysis()["flops"]
  assert 2 * 2 * exact <= flops <= 1.3 * 2 * 2 * exact


def test_mlp_breakdown_and_ratio():
  m, v, x = _model(dict(name="mlp", hidden_dims=(32, 16), widths=(0.25, 0.5, 1.0)), (20,), TASKS[:1])
  c = WidthConfig.create(0.5, {"cls": 0.25})
  got = macs.count_macs(m, c, (20,))
  # 20x16 + 16x8 encoder; head: 8x8 hidden (0.25*16 -> 8) + 8x10 out.
  assert got == {"encoder": 20 * 16 + 16 * 8, "head/cls": 8 * 8 + 8 * 10, "total": 448 + 144}
  full = 20 * 32 + 32 * 16 + 16 * 16 + 16 * 10
  assert macs.macs_ratio(m, c, (20,)) == pytest.approx(592 / full)
  with pytest.raises(ValueError, match="config heads"):
    macs.count_macs(m, WidthConfig.create(1.0, {"x": 1.0}), (20,))


def test_conv_taps():
  assert macs.conv_taps(5, 3, 1, "SAME") == 15
  assert macs.conv_taps(5, 3, 1, "SAME", count_padding=False) == 13
  assert macs.conv_taps(4, 3, 2, "SAME", count_padding=False) == 5  # out 2, pad (0, 1): taps 3 + 2
