"""Multi-Head MoE against a float64 numpy reference (sub-token routing, dropless and with drops), the h=1
identity case against MoEMLP, equal-MAC sizing, expert activation per token, and use inside TaskExpertModel."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models.taskexpert import build_taskexpert
from mtl.nn.mh_moe import MultiHeadMoE, equal_macs_hidden, mh_moe_layer_macs
from mtl.nn.moe import MoEMLP
from mtl.nn.moe_experts import moe_layer_macs
from mtl.tasks.base import TaskSpec
from mtl.testing.random_params import randn
from mtl.testing.random_params import random_params as _boxed_random_params


def random_params(*args, **kwargs):  # plain arrays (MoEMLP's are boxed with logical axis names)
  return nn.meta.unbox(_boxed_random_params(*args, **kwargs))


def _gelu(x):  # jax.nn.gelu's default (tanh) form
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _np_mh_moe(x, p, heads, top_k, capacity=None):
  """Per sub-token loop in float64: top-k of the router softmax, renormalised, choice-major capacity."""
  d = x.shape[-1]
  tokens = x.reshape(-1, d) @ p["multi_head"]["kernel"] + p["multi_head"]["bias"]
  sub = tokens.reshape(-1, d // heads)
  e = p["experts"]
  logits = sub @ e["router"][0]
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  order = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
  w = np.take_along_axis(probs, order, -1)
  w /= w.sum(-1, keepdims=True)
  out = np.zeros_like(sub)
  count = np.zeros(e["router"].shape[-1], int)
  for j in range(top_k):  # choice-major priority, earlier sub-tokens first
    for n in range(sub.shape[0]):
      ex = order[n, j]
      count[ex] += 1
      if capacity is not None and count[ex] > capacity:
        continue
      h = _gelu(sub[n] @ e["w1"][ex] + e["b1"][ex])
      out[n] += w[n, j] * (h @ e["w2"][ex] + e["b2"][ex])
  y = out.reshape(-1, d) @ p["merge"]["kernel"] + p["merge"]["bias"]
  return y.reshape(x.shape)


@pytest.mark.parametrize("cf,capacity", [(0.0, None), (0.5, 2)])
def test_matches_numpy_reference(cf, capacity):
  """x [2, 3, 8], 4 heads -> 24 sub-tokens of 2 dims, 4 experts, top-2. Dropless (cf 0), and cf 0.5: one group
  of 24 sub-tokens, ceil(0.5 * 24 * 2 / 4) = 6 slots per expert for 48 assignments, so many are dropped."""
  layer = MultiHeadMoE(num_experts=4, num_heads=4, top_k=2, hidden_dim=5, capacity_factor=cf, impl="dense")
  x = randn(0, (2, 3, 8)) * jnp.asarray([1e-2, 1, 1, 1, 1e2, 1, 1, 0.0])  # badly scaled, one constant column
  params = random_params(layer, x)
  y = jax.jit(lambda p, x: layer.apply({"params": p}, x, train=True, mutable=["aux_loss", "metrics"])[0])(
      params, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  want = _np_mh_moe(np.asarray(x, np.float64), p, 4, 2, None if cf <= 0 else 6)
  np.testing.assert_allclose(y, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
  ragged = MultiHeadMoE(num_experts=4, num_heads=4, top_k=2, hidden_dim=5, capacity_factor=cf, impl="ragged")
  y2 = jax.jit(lambda p, x: ragged.apply({"params": p}, x, train=True, mutable=["aux_loss", "metrics"])[0])(
      params, x)
  np.testing.assert_allclose(y2, y, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_one_head_with_identity_projections_is_moe_mlp():
  layer = MultiHeadMoE(num_experts=3, num_heads=1, top_k=1, hidden_dim=4, capacity_factor=0.0)
  plain = MoEMLP(num_experts=3, top_k=1, hidden_dim=4, capacity_factor=0.0)
  x = randn(1, (5, 6))
  params = random_params(layer, x)
  eye = {"kernel": jnp.eye(6), "bias": jnp.zeros(6)}
  params = {**params, "multi_head": eye, "merge": eye}
  a = layer.apply({"params": params}, x, mutable=["aux_loss", "metrics"])[0]
  b = plain.apply({"params": params["experts"]}, x, mutable=["aux_loss", "metrics"])[0]
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_equal_macs_sizing():
  for d, h_moe, k, e, heads in ((128, 256, 2, 8, 4), (64, 128, 1, 16, 8), (96, 384, 4, 8, 3)):
    h_mh = equal_macs_hidden(d, h_moe, k)
    moe = moe_layer_macs(10, d, h_moe, e, k, 10, impl="ragged")["total"]
    mh = mh_moe_layer_macs(10, d, h_mh, e, k, heads)["total"]
    assert moe == mh, (d, h_moe, k, moe, mh)
  with pytest.raises(ValueError, match="too narrow"):
    equal_macs_hidden(128, 64, 2)
  with pytest.raises(ValueError, match="divide"):
    MultiHeadMoE(num_experts=2, num_heads=3, top_k=1).init(jax.random.PRNGKey(0), jnp.zeros((2, 8)))


def test_one_token_reaches_more_experts():
  """A single token: MoEMLP top-2 loads exactly 2 of 8 experts; MH-MoE with 4 heads routes 4 sub-tokens and
  reaches between 2 and 8, here (random router) more than 2."""
  x = randn(2, (1, 16))
  moe = MoEMLP(num_experts=8, top_k=2, hidden_dim=8, capacity_factor=0.0)
  mh = MultiHeadMoE(num_experts=8, num_heads=4, top_k=2, hidden_dim=4, capacity_factor=0.0)

  def active(layer):
    _, state = layer.apply({"params": random_params(layer, x, seed=3)}, x, mutable=["metrics", "aux_loss"])
    flat = jax.tree_util.tree_flatten_with_path(state["metrics"])[0]
    loads = [float(v) for path, v in flat if "expert_load" in jax.tree_util.keystr(path)]
    assert len(loads) == 8
    return sum(v > 0 for v in loads)

  assert active(moe) == 2
  assert 2 < active(mh) <= 8


def test_taskexpert_model_with_mh_moe():
  cfg = ml_collections.ConfigDict(dict(name="taskexpert", variant="moe", dim=8, depth=1, num_heads=2,
                                       mlp_ratio=2.0, moe_every=1, num_experts=4, top_k=2, moe_heads=4,
                                       moe_hidden=equal_macs_hidden(8, 16, 2), encoder={}, head={}))
  model = build_taskexpert(cfg, (TaskSpec("y", "binary", 1),), (5,))
  x = randn(4, (3, 5))
  params = random_params(model, x)
  assert params["block0"]["moe"]["experts"]["w1"].shape == (4, 2, 12)  # sub-tokens of 8 / 4 = 2 dims
  out, state = model.apply({"params": params}, x, train=True, mutable=["aux_loss", "metrics"])
  assert out["y"].shape == (3, 1)
  assert jax.tree_util.tree_leaves(state["aux_loss"])
