"""Expert-parallel MoE on an 8-device simulated CPU mesh equals the single-device layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from mtl.nn import moe_routing
from mtl.nn.expert_parallel import expert_parallel_experts
from mtl.nn.moe import MoEMLP
from mtl.nn.moe_experts import ExpertParams
from mtl.testing.random_params import randn, random_params


def _mesh(n=8):
  if len(jax.devices()) < n:
    pytest.skip(f"needs {n} devices")
  return Mesh(np.asarray(jax.devices()[:n]), ("expert",))


def _params(key, e, d, h):
  return ExpertParams(randn(key, (e, d, h)) / np.sqrt(d), 0.1 * randn(key + 1, (e, h)),
                      randn(key + 2, (e, h, d)) / np.sqrt(h), 0.1 * randn(key + 3, (e, d)))


def test_sharded_layer_equals_single_device_layer_forward_and_grad():
  mesh = _mesh()
  kw = dict(num_experts=16, top_k=2, hidden_dim=8, capacity_factor=1.0, num_groups=8)
  sharded = MoEMLP(impl="expert_parallel", mesh=mesh, **kw)
  single = MoEMLP(impl="dense", **kw)
  x = randn(1, (4, 8, 6))  # 32 tokens -> 8 groups of 4; 2 experts per device
  params = random_params(single, x)

  def loss(module, params, x):
    y, aux = module.apply({"params": params}, x, train=True, mutable=["aux_loss"])
    return jnp.sum(jnp.sin(y)) + sum(jax.tree_util.tree_leaves(aux))

  _, state = jax.jit(lambda p, x: single.apply({"params": p}, x, train=True, mutable=["metrics"]))(params, x)
  assert float(state["metrics"]["moe/drop_fraction"][0]) > 0  # capacity 1 per group: dropping is exercised
  (l1, g1) = jax.jit(jax.value_and_grad(lambda p, x: loss(sharded, p, x)))(params, x)
  (l0, g0) = jax.jit(jax.value_and_grad(lambda p, x: loss(single, p, x)))(params, x)
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_sizes_raise():
  mesh = _mesh()
  x = jnp.zeros((8, 4, 4))
  r = moe_routing.Routing(jnp.zeros((8, 4, 1), jnp.int32), jnp.zeros((8, 4, 1)), jnp.zeros((8, 4, 1), jnp.int32),
                          jnp.ones((8, 4, 1), bool), None)
  with pytest.raises(ValueError, match="divisible"):
    expert_parallel_experts(x, r, _params(0, 6, 4, 4), 4, mesh)
  with pytest.raises(ValueError, match="no 'model' axis"):
    expert_parallel_experts(x, r, _params(0, 8, 4, 4), 4, mesh, axis_name="model")
