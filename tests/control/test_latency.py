import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtl.control import latency
from mtl.control.widths import WidthConfig
from mtl.models.multitask import build_model
from mtl.tasks.base import TaskSpec


def random_variables(module, *args, seed=0, scale=0.3, **kw):
  """Variables with the shapes `module.init` would create, filled with numpy normals (no init compile)."""
  shapes = jax.eval_shape(lambda k: module.init(k, *args, **kw), jax.random.PRNGKey(0))
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.randn(*s.shape), s.dtype), shapes)


def test_latency_table_rows():
  cfg = ml_collections.ConfigDict(dict(name="multitask", encoder=dict(name="mlp", hidden_dims=(64,)),
                                       head=dict(hidden_dim=16)))
  model = build_model(cfg, (TaskSpec("t", "binary", 1),), (12,))
  x = jnp.ones((4, 12))
  v = random_variables(model, x)
  out = latency.latency_table(model, v, [WidthConfig.create(0.25, {"t": 0.5})], x, warmup=1, iters=2)
  rows = {r["config"]: r for r in out["rows"]}
  assert set(rows) == {"enc=1,t=1", "enc=0.25,t=0.5"}
  assert rows["enc=1,t=1"]["macs_ratio"] == 1.0 and rows["enc=1,t=1"]["latency_ratio"] == 1.0
  assert rows["enc=0.25,t=0.5"]["macs"] == 12 * 16 + 16 * 8 + 8
  assert rows["enc=0.25,t=0.5"]["median_s"] > 0
  assert "Spearman" in latency.format_table(out)
