"""Expert-parallel MoE inside TaskExpertModel and the training loop equals the single-device dense layer.

Uses the 8 simulated CPU devices of tests/conftest.py on a data x expert = 2 x 4 mesh: tokens are split over
all 8 devices, the 8 experts over the 4 devices of the 'expert' axis (2 each).
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from mtl import sharding
from mtl.models.multitask import build_model
from mtl.tasks.base import TaskSpec
from mtl.testing.random_params import randn
from mtl.testing.train_synthetic import restored_params, synthetic_config
from mtl.train import loop

TASKS = (TaskSpec("left", "classification", 5), TaskSpec("seg", "semseg", 3))


def _mesh():
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 devices")
  return sharding.make_mesh({"data": 2, "expert": 4})


def _model_cfg(impl, **kw):
  base = dict(name="taskexpert", dim=8, depth=2, num_heads=2, mlp_ratio=1.0, moe_every=1, num_experts=8,
              top_k=2, capacity_factor=1.0, te_experts=3, te_hidden=4, moe_impl=impl, moe_groups=8,
              encoder={}, head={})
  base.update(kw)
  return ml_collections.ConfigDict(base)


@pytest.mark.parametrize("variant,router", [("moe", "topk"), ("taskexpert", "task")])
def test_expert_parallel_model_equals_dense_forward_and_grads(variant, router):
  mesh = _mesh()
  x = randn(0, (8, 8, 8, 1))  # 8 images, patch 4 -> 4 tokens each: 32 tokens, 8 groups of 4
  kw = dict(variant=variant, router=router, patch_size=4)
  dense = build_model(_model_cfg("dense", **kw), TASKS, x.shape[1:])
  parallel = build_model(_model_cfg("expert_parallel", **kw), TASKS, x.shape[1:], mesh=mesh)
  params = dense.init(jax.random.PRNGKey(1), x, train=True)["params"]

  def loss(model, p, x):
    out, state = model.apply({"params": p}, x, train=True, mutable=["aux_loss", "metrics"])
    return (sum(jnp.sum(jnp.sin(o)) for o in out.values()) + sum(jax.tree_util.tree_leaves(state["aux_loss"])),
            state["metrics"])

  (l0, m0), g0 = jax.jit(jax.value_and_grad(lambda p, x: loss(dense, p, x), has_aux=True))(params, x)
  x_sharded = jax.device_put(x, sharding.batch_sharding(mesh))
  (l1, m1), g1 = jax.jit(jax.value_and_grad(lambda p, x: loss(parallel, p, x), has_aux=True))(params, x_sharded)
  drop = [v for k, v in jax.tree_util.tree_leaves_with_path(m0) if "drop_fraction" in jax.tree_util.keystr(k)]
  assert max(float(v) for v in drop) > 0  # capacity 1 per expert and group: dropping is exercised
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(m1), jax.tree_util.tree_leaves(m0)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # atol relative to the largest gradient: some leaves (attention key biases) have exact gradient 0, and
  # float32 round-off of sums of size ~300 leaves ~1e-5 there.
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(g0))
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)


def test_expert_parallel_without_mesh_is_a_named_error():
  model = build_model(_model_cfg("expert_parallel"), TASKS, (8, 8, 1))
  with pytest.raises(ValueError, match="needs the device mesh"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((8, 8, 8, 1)))


def _moe_config(impl, num_steps=3):
  c = synthetic_config(num_steps, every_steps=num_steps)
  c.model = common.base_config().model
  c.model.update(dict(name="taskexpert", variant="moe", patch_size=4, dim=8, depth=2, num_heads=2, mlp_ratio=1.0,
                      moe_every=1, num_experts=8, top_k=2, capacity_factor=1.0, eval_capacity_factor=1.0,
                      moe_impl=impl, moe_groups=8))
  return c


def test_training_loop_with_sharded_experts_matches_single_device(tmp_path):
  mesh = _mesh()
  parallel = _moe_config("expert_parallel")
  common.apply_sharding_preset(parallel, "expert")
  exp = loop.build_experiment(parallel, mesh)
  w1 = exp.state.params["block0"]["moe"]["w1"]
  assert w1.sharding.spec[0] == "expert" and w1.addressable_shards[0].data.shape[0] == 2  # 8 experts / 4 devices
  r1 = loop.train_and_evaluate(parallel, str(tmp_path / "ep"), mesh=mesh, progress=False)
  one = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  r0 = loop.train_and_evaluate(_moe_config("dense"), str(tmp_path / "dense"), mesh=one, progress=False)
  p1, _ = restored_params(str(tmp_path / "ep"))
  p0, _ = restored_params(str(tmp_path / "dense"))
  # Attention key biases have exact gradient 0 (softmax is shift invariant), so Adam turns float32 round-off
  # into full-size random steps there; every other parameter must agree.
  compared = 0
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p1), jax.tree_util.tree_leaves(p0)):
    name = jax.tree_util.keystr(path)
    if "['key']['bias']" in name:
      continue
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
    compared += 1
  assert compared > 20
  for t in ("even", "odd"):
    np.testing.assert_allclose(r1["test"][t]["loss"], r0["test"][t]["loss"], rtol=1e-4)
