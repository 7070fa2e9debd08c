"""Expert-parallel MoE on an 8-device simulated CPU mesh equals the single-device layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from mtl.nn import moe_routing
from mtl.nn.expert_parallel import expert_parallel_experts
from mtl.nn.moe import MoEMLP
from mtl.nn.moe_experts import ExpertParams, experts_dense


def _mesh(n=8):
  if len(jax.devices()) < n:
    pytest.skip(f"needs {n} devices")
  return Mesh(np.asarray(jax.devices()[:n]), ("expert",))


def _params(key, e, d, h):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  return ExpertParams(jax.random.normal(k1, (e, d, h)) / np.sqrt(d), 0.1 * jax.random.normal(k2, (e, h)),
                      jax.random.normal(k3, (e, h, d)) / np.sqrt(h), 0.1 * jax.random.normal(k4, (e, d)))


def test_function_equals_per_group_dense():
  mesh = _mesh()
  g, n, d, h, e, k = 8, 6, 4, 8, 16, 2
  kx, kl, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (g, n, d))
  logits = jax.random.normal(kl, (g, n, e)) * 2.0
  capacity = moe_routing.expert_capacity(n, e, k, 1.0)  # 1 slot per expert per group: drops happen
  routing = moe_routing.group_routing(logits, k, capacity)
  assert float(moe_routing.drop_fraction(routing.kept)) > 0
  p = _params(kp, e, d, h)
  got = jax.jit(lambda x, r, p: expert_parallel_experts(x, r, p, capacity, mesh))(x, routing, p)
  want = jax.vmap(lambda xg, r: experts_dense(xg, r, p, capacity))(x, routing)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sharded_layer_equals_single_device_layer_forward_and_grad():
  mesh = _mesh()
  kw = dict(num_experts=8, top_k=2, hidden_dim=8, capacity_factor=1.0, num_groups=8)
  sharded = MoEMLP(impl="expert_parallel", mesh=mesh, **kw)
  single = MoEMLP(impl="dense", **kw)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 6))  # 32 tokens -> 8 groups of 4
  params = single.init(jax.random.PRNGKey(2), x)["params"]

  def loss(module, params, x):
    y, aux = module.apply({"params": params}, x, train=True, mutable=["aux_loss"])
    return jnp.sum(jnp.sin(y)) + sum(jax.tree_util.tree_leaves(aux))

  (l1, g1) = jax.jit(jax.value_and_grad(lambda p, x: loss(sharded, p, x)))(params, x)
  (l0, g0) = jax.value_and_grad(lambda p, x: loss(single, p, x))(params, x)
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_sizes_raise():
  mesh = _mesh()
  x = jnp.zeros((8, 4, 4))
  r = moe_routing.group_routing(jnp.zeros((8, 4, 6)), 1, 4)
  with pytest.raises(ValueError, match="divisible"):
    expert_parallel_experts(x, r, _params(jax.random.PRNGKey(0), 6, 4, 4), 4, mesh)
  with pytest.raises(ValueError, match="no 'model' axis"):
    expert_parallel_experts(x, r, _params(jax.random.PRNGKey(0), 8, 4, 4), 4, mesh, axis_name="model")
