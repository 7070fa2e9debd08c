"""MoE routing, expert compute (ragged vs einsum dispatch vs a per-token loop), MoEMLP, MultiGateMoE, MACs."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.control.macs import traced_macs
from mtl.nn import moe_routing
from mtl.nn.moe import MoEMLP, MultiGateMoE, active_experts_from_load
from mtl.nn.moe_experts import ExpertParams, experts_dense, experts_ragged, moe_layer_macs
from mtl.testing.random_params import randn, random_params


def _gelu(x):
  return np.asarray(jax.nn.gelu(jnp.asarray(x)))


def _np_routing(logits, k, capacity, renormalize=True):
  """Loop reference: choice-major priority, slot counters per expert."""
  logits = np.asarray(logits, np.float64)
  n, e = logits.shape
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  index = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
  weight = np.take_along_axis(probs, index, -1)
  if renormalize and k > 1:
    weight = weight / weight.sum(-1, keepdims=True)
  fill = np.zeros(e, int)
  kept = np.zeros((n, k), bool)
  for j in range(k):
    for t in range(n):
      kept[t, j] = fill[index[t, j]] < capacity
      fill[index[t, j]] += 1
  return index, np.where(kept, weight, 0.0), kept, probs


def _np_experts(x, index, weight, p):
  x = np.asarray(x, np.float64)
  w1, b1, w2, b2 = (np.asarray(a, np.float64) for a in p)
  out = np.zeros((x.shape[0], w2.shape[-1]))
  for t in range(x.shape[0]):
    for j in range(index.shape[1]):
      if weight[t, j] != 0:
        e = index[t, j]
        out[t] += weight[t, j] * (_gelu(x[t] @ w1[e] + b1[e]) @ w2[e] + b2[e])
  return out


def _params(key, e, d, h, o=None):
  o = o or d
  return ExpertParams(randn(key, (e, d, h)) / np.sqrt(d), 0.1 * randn(key + 1, (e, h)),
                      randn(key + 2, (e, h, o)) / np.sqrt(h), 0.1 * randn(key + 3, (e, o)))


def test_expert_capacity():
  assert moe_routing.expert_capacity(16, 4, 2, 1.0) == 8
  assert moe_routing.expert_capacity(10, 4, 1, 1.25) == math.ceil(1.25 * 10 / 4)
  assert moe_routing.expert_capacity(10, 4, 2, 0.0) == 10  # dropless
  assert moe_routing.expert_capacity(4, 64, 1, 1.0) == 1
  with pytest.raises(ValueError, match="must be >= 1"):
    moe_routing.expert_capacity(0, 4, 1, 1.0)


@pytest.mark.parametrize("k,cf", [(1, 1.0), (2, 1.0), (2, 0.5), (3, 0.0)])
def test_top_k_routing_matches_loop(k, cf):
  n, e = 13, 5
  logits = randn(k, (n, e)) * 2
  cap = moe_routing.expert_capacity(n, e, k, cf)
  r = jax.jit(moe_routing.top_k_routing, static_argnums=(1, 2))(logits, k, cap)
  index, weight, kept, probs = _np_routing(logits, k, cap)
  np.testing.assert_array_equal(r.expert_index, index)
  np.testing.assert_array_equal(r.kept, kept)
  np.testing.assert_allclose(r.weight, weight, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(r.probs, probs, rtol=1e-5)
  np.testing.assert_allclose(moe_routing.drop_fraction(r.kept), 1 - kept.mean(), rtol=1e-6)
  # Kept slots are distinct and below capacity per expert.
  for ex in range(e):
    slots = np.asarray(r.position)[(index == ex) & kept]
    assert len(set(slots.tolist())) == len(slots) and (slots < cap).all()
  if cf == 0.0:
    assert kept.all()


def test_routing_bad_input():
  with pytest.raises(ValueError, match="top_k"):
    moe_routing.top_k_routing(jnp.zeros((4, 3)), 4, 2)
  with pytest.raises(ValueError, match=r"\[N, E\]"):
    moe_routing.top_k_routing(jnp.zeros((2, 4, 3)), 1, 2)


def test_aux_losses_against_hand_values():
  # Uniform router + perfectly balanced assignments -> load-balancing loss 1.
  probs = jnp.full((4, 4), 0.25)
  index = jnp.array([[0], [1], [2], [3]])
  np.testing.assert_allclose(moe_routing.load_balancing_loss(probs, index), 1.0, rtol=1e-6)
  # Everything on expert 0 with prob 1 -> E.
  probs = jnp.zeros((4, 4)).at[:, 0].set(1.0)
  np.testing.assert_allclose(moe_routing.load_balancing_loss(probs, jnp.zeros((4, 1), int)), 4.0, rtol=1e-6)
  logits = np.random.RandomState(0).randn(6, 5)
  z = np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(moe_routing.router_z_loss(jnp.asarray(logits)), np.mean(z ** 2), rtol=1e-5)
  np.testing.assert_allclose(moe_routing.expert_load(jnp.array([[0, 1], [0, 2]]), 4), [0.5, 0.25, 0.25, 0])


@pytest.mark.parametrize("cf", [0.5, 0.0])
def test_ragged_and_dense_match_loop_reference(cf):
  n, d, h, e, k = 12, 6, 10, 4, 2
  kx, kl, kp = 30, 31, 32
  x = randn(kx, (n, d))
  logits = randn(kl, (n, e)) * 2
  p = _params(kp, e, d, h, o=5)
  cap = moe_routing.expert_capacity(n, e, k, cf)
  r = jax.jit(moe_routing.top_k_routing, static_argnums=(1, 2))(logits, k, cap)
  want = _np_experts(x, np.asarray(r.expert_index), np.asarray(r.weight), p)
  np.testing.assert_allclose(jax.jit(experts_dense, static_argnums=3)(x, r, p, cap), want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jax.jit(experts_ragged)(x, r, p), want, rtol=1e-4, atol=1e-5)
  if cf > 0:
    assert not bool(r.kept.all())  # the case exercises dropping


def test_ragged_gradients_equal_dense():
  n, d, h, e, k = 10, 4, 6, 3, 2
  kx, kl, kp = 40, 41, 42
  x = randn(kx, (n, d))
  logits = randn(kl, (n, e))
  p = _params(kp, e, d, h)
  cap = moe_routing.expert_capacity(n, e, k, 0.75)

  def loss(fn, x, logits, p):
    r = moe_routing.top_k_routing(logits, k, cap)
    return jnp.sum(jnp.tanh(fn(x, r, p)))

  g_r = jax.jit(jax.grad(lambda *a: loss(experts_ragged, *a), argnums=(0, 1, 2)))(x, logits, p)
  g_d = jax.jit(jax.grad(lambda *a: loss(lambda x, r, p: experts_dense(x, r, p, cap), *a), argnums=(0, 1, 2)))(
      x, logits, p)
  for a, b in zip(jax.tree_util.tree_leaves(g_r), jax.tree_util.tree_leaves(g_d)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _init(m, x, **kw):
  return random_params(m, x, **kw)


def _apply(m, params, x, **kw):
  return jax.jit(lambda p, x: m.apply({"params": p}, x, **kw))(params, x)


def _init_apply(m, x, **kw):
  params = _init(m, x, **kw)
  y, state = _apply(m, params, x, mutable=["aux_loss", "metrics"], **kw)
  return params, y, state


def test_moe_mlp_ragged_equals_dense_and_sows():
  """Task routers (router='topk' is the same code with one router; see the expert-parallel test)."""
  router = "task"
  kw = dict(num_experts=4, top_k=2, hidden_dim=8, capacity_factor=0.75, router=router, num_tasks=3,
            num_groups=2)
  x = randn(5, (2, 5, 6))
  call = dict(task_id=2) if router == "task" else {}
  params, y, state = _init_apply(MoEMLP(impl="ragged", **kw), x, train=True, **call)
  y_dense = _apply(MoEMLP(impl="dense", **kw), params, x, train=True, **call)
  assert y.shape == x.shape
  np.testing.assert_allclose(y, y_dense, rtol=1e-5, atol=1e-5)
  assert params["router"].shape == ((3, 6, 4) if router == "task" else (1, 6, 4))

  # Sown values equal the routing functions on the same logits, per group of 5 tokens.
  router_w = params["router"][2 if router == "task" else 0]
  logits = x.reshape(2, 5, 6) @ router_w
  cap = moe_routing.expert_capacity(5, 4, 2, 0.75)
  r = moe_routing.group_routing(logits, 2, cap)
  np.testing.assert_allclose(state["aux_loss"]["moe_load_balance"][0],
                             1e-2 * moe_routing.load_balancing_loss(r.probs, r.expert_index), rtol=1e-5)
  np.testing.assert_allclose(state["aux_loss"]["moe_z_loss"][0], 1e-3 * moe_routing.router_z_loss(logits),
                             rtol=1e-5)
  prefix = "moe/task2/" if router == "task" else "moe/"
  np.testing.assert_allclose(state["metrics"][prefix + "drop_fraction"][0], 1 - np.mean(r.kept), rtol=1e-6)
  loads = [float(state["metrics"][f"{prefix}expert_load_{i}"][0]) for i in range(4)]
  np.testing.assert_allclose(sum(loads), 1.0, rtol=1e-6)
  # Loop reference for the whole layer.
  p = ExpertParams(params["w1"], params["b1"], params["w2"], params["b2"])
  want = np.concatenate([_np_experts(x.reshape(2, 5, 6)[g], np.asarray(r.expert_index[g]),
                                     np.asarray(r.weight[g]), p) for g in range(2)])
  np.testing.assert_allclose(y.reshape(10, 6), want, rtol=1e-4, atol=1e-5)


def test_task_routers_differ_and_eval_capacity():
  m = MoEMLP(num_experts=4, top_k=1, hidden_dim=8, router="task", num_tasks=2, capacity_factor=0.5,
             eval_capacity_factor=0.0)
  x = randn(6, (3, 4, 6))
  params = _init(m, x, task_id=0)

  def both(p, x):
    y0, st = m.apply({"params": p}, x, task_id=0, train=False, mutable=["metrics"])
    return y0, m.apply({"params": p}, x, task_id=1), st

  y0, y1, st = jax.jit(both)(params, x)
  assert float(jnp.max(jnp.abs(y0 - y1))) > 1e-3
  assert float(st["metrics"]["moe/task0/drop_fraction"][0]) == 0.0  # eval capacity factor 0: dropless


def test_moe_mlp_bad_config():
  x = jnp.zeros((2, 3, 4))
  with pytest.raises(ValueError, match="task_id"):
    MoEMLP(num_experts=4, router="task", num_tasks=2).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="unknown impl"):
    MoEMLP(num_experts=4, impl="loop").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="unknown router"):
    MoEMLP(num_experts=4, router="hash").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="top_k"):
    MoEMLP(num_experts=2, top_k=3).init(jax.random.PRNGKey(0), x)
  grouped = MoEMLP(num_experts=2, num_groups=4)
  variables = grouped.init(jax.random.PRNGKey(0), x)  # init runs one group: parameter shapes do not depend on it
  with pytest.raises(ValueError, match="num_groups"):
    grouped.apply(variables, x)  # 6 tokens do not split into 4 groups
  with pytest.raises(ValueError, match=r"\[B, D\] or \[B, L, D\]"):
    MoEMLP(num_experts=2).init(jax.random.PRNGKey(0), jnp.zeros((2, 2, 2, 2)))
  with pytest.raises(ValueError, match="active_experts"):
    MoEMLP(num_experts=4, top_k=2).init(jax.random.PRNGKey(0), x, active_experts=(1,))


@pytest.mark.parametrize("impl", ["ragged", "dense"])
def test_single_task_pruned_inference_equals_full(impl):
  """A task's pruned layer (only the experts it routes to) gives the full layer's output."""
  kw = dict(num_experts=8, top_k=2, hidden_dim=8, router="task", num_tasks=2, capacity_factor=1.0, impl=impl)
  m = MoEMLP(**kw)
  x = randn(7, (2, 3, 6)).at[..., 0].set(3.0)
  params = _init(m, x, task_id=1)
  # Feature 0 is always 3: task 1's router then never picks experts {0, 2, 3, 5, 7}.
  params["router"] = params["router"].at[1, 0, jnp.array([0, 2, 3, 5, 7])].set(-50.0)
  y_full, st = _apply(m, params, x, task_id=1, mutable=["metrics"])
  load = np.array([float(st["metrics"][f"moe/task1/expert_load_{i}"][0]) for i in range(8)])
  active = active_experts_from_load(load)
  assert set(active) <= {1, 4, 6}
  y_pruned, st2 = _apply(m, params, x, task_id=1, active_experts=active, mutable=["metrics"])
  np.testing.assert_allclose(y_pruned, y_full, rtol=1e-5, atol=1e-6)
  load2 = np.array([float(st2["metrics"][f"moe/task1/expert_load_{i}"][0]) for i in range(8)])
  np.testing.assert_allclose(load2, load, rtol=1e-6)


def test_active_experts_from_load():
  assert active_experts_from_load(np.array([0.5, 0.0, 0.2, 0.3])) == (0, 2, 3)
  assert active_experts_from_load(np.array([0.5, 0.01, 0.2, 0.29]), 0.1) == (0, 2, 3)
  with pytest.raises(ValueError, match="no expert"):
    active_experts_from_load(np.zeros(3))


def test_moe_layer_macs_hand_count():
  n, d, h, e, k, cap = 10, 6, 8, 4, 2, 5
  mlp = d * h + h * d
  dense = moe_layer_macs(n, d, h, e, k, cap, impl="dense")
  assert dense == {"router": n * d * e, "dispatch": 2 * n * e * cap * d, "experts": e * cap * mlp,
                   "total": n * d * e + 2 * n * e * cap * d + e * cap * mlp}
  ragged = moe_layer_macs(n, d, h, e, k, cap, impl="ragged")
  assert ragged["experts"] == n * k * mlp and ragged["dispatch"] == 0
  assert moe_layer_macs(n, d, h, e, k, cap, impl="ragged", num_routed=7)["experts"] == 7 * mlp
  all_experts = moe_layer_macs(n, d, h, e, k, cap, impl="all", num_groups=3)
  assert all_experts["experts"] == 3 * n * e * mlp
  # Single-task pruning: the task's router scores 3 of 8 experts -> router MACs shrink by 5/8.
  full = moe_layer_macs(n, d, h, 8, k, cap, impl="ragged")
  pruned = moe_layer_macs(n, d, h, 3, k, cap, impl="ragged")
  assert full["total"] - pruned["total"] == n * d * 5
  with pytest.raises(ValueError, match="unknown MoE impl"):
    moe_layer_macs(n, d, h, e, k, cap, impl="loop")


def test_moe_layer_macs_equal_traced_dense_layer():
  """The counted MACs equal what the jitted dense-dispatch layer really runs (dot_generals in its jaxpr)."""
  for active in (None, (0, 3, 5)):
    m = MoEMLP(num_experts=6, top_k=2, hidden_dim=8, capacity_factor=1.0, impl="dense", num_groups=2)
    x = jnp.ones((2, 6, 4))
    params = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"]  # abstract: nothing compiles
    got = traced_macs(lambda p, x: m.apply({"params": p}, x, active_experts=active), params, x)
    cap = moe_routing.expert_capacity(6, 6, 2, 1.0)
    e = 6 if active is None else len(active)
    assert got == moe_layer_macs(6, 4, 8, e, 2, cap, impl="dense", num_groups=2)["total"]


def _np_mmoe(x, params, task, top_k=None):
  x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
  g = x @ np.asarray(params["gates"][task], np.float64)
  g = np.exp(g - g.max(-1, keepdims=True))
  g /= g.sum(-1, keepdims=True)
  if top_k is not None:
    thresh = -np.sort(-g, -1)[:, top_k - 1:top_k]
    g = np.where(g >= thresh, g, 0)
    g /= g.sum(-1, keepdims=True)
  p = [np.asarray(params[n], np.float64) for n in ("w1", "b1", "w2", "b2")]
  out = 0
  for e in range(p[0].shape[0]):
    out = out + g[:, e:e + 1] * (_gelu(x @ p[0][e] + p[1][e]) @ p[2][e] + p[3][e])
  return out


@pytest.mark.parametrize("top_k", [None, 2])
def test_multigate_moe_matches_reference(top_k):
  m = MultiGateMoE(num_experts=4, hidden_dim=8, num_tasks=3, out_dim=5, top_k=top_k)
  x = randn(8, (3, 2, 6))
  params = _init(m, x)
  out = _apply(m, params, x)
  assert sorted(out) == [0, 1, 2]
  for t in range(3):
    assert out[t].shape == (3, 2, 5)
    np.testing.assert_allclose(out[t].reshape(-1, 5), _np_mmoe(x, params, t, top_k), rtol=1e-4, atol=1e-5)
  single = _apply(m, params, x, task_ids=(1,))
  assert list(single) == [1]
  np.testing.assert_allclose(single[1], out[1], rtol=1e-6)
  with pytest.raises(ValueError, match="task_ids"):
    m.apply({"params": params}, x, task_ids=[3])
