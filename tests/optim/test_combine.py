"""combine_gradients: agreement with plain jax.grad / jax.jacrev references, jit, optax composition,
the FeatureSplit route, sharded == single device, masks, and input validation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtl.optim import FeatureSplit, combine_gradients, get_method, known_methods, masked_mean
from mtl.optim import solvers

T, B, DIN, DH = 3, 8, 4, 5


def _problem(seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 5)
  params = {"enc": jax.random.normal(k[0], (DIN, DH)) * 0.5, "heads": jax.random.normal(k[1], (T, DH)) * 0.5}
  batch = {"x": jax.random.normal(k[2], (B, DIN)), "y": jax.random.normal(k[3], (B, T)),
           "mask": (jax.random.uniform(k[4], (B, T)) > 0.3).astype(jnp.float32)}
  return params, batch


def _features(params, batch):
  return jnp.tanh(batch["x"] @ params["enc"])  # [B, DH]


def _head_losses(params, z, batch):
  pred = z @ params["heads"].T  # [B, T]
  per = (pred - batch["y"]) ** 2
  losses = jnp.stack([masked_mean(per[:, t], batch["mask"][:, t]) for t in range(T)])
  return losses, {"pred_mean": pred.mean()}


def _loss_fn(batch):
  return lambda p: _head_losses(p, _features(p, batch), batch)


def _split(batch):
  return FeatureSplit(lambda p: _features(p, batch), lambda p, z: _head_losses(p, z, batch))


def test_loss_kind_equals_grad_of_weighted_sum():
  params, batch = _problem()
  m = get_method("gls", T)
  grads, state, losses, aux, metrics = jax.jit(
      lambda s, p, b: combine_gradients(m, s, _loss_fn(b), p, 0))(m.init(params), params, batch)
  w = jnp.stack([metrics[f"weight/{i}"] for i in range(T)])
  ref = jax.jit(jax.grad(lambda p, w, b: jnp.dot(w, _loss_fn(b)(p)[0])))(params, w, batch)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads, ref)
  np.testing.assert_allclose(losses, _loss_fn(batch)(params)[0], rtol=1e-6)
  assert "pred_mean" in aux and int(state["count"]) == 1


def test_gramian_kind_equals_jacrev_reference():
  params, batch = _problem(1)
  m = get_method("mgda", T)
  grads, _, _, _, metrics = jax.jit(
      lambda s, p, b: combine_gradients(m, s, _loss_fn(b), p, 0))(m.init(params), params, batch)
  jac = jax.jit(jax.jacrev(lambda p, b: _loss_fn(b)(p)[0]))(params, batch)
  flat = np.concatenate([np.asarray(jac[k]).reshape(T, -1) for k in sorted(jac)], axis=1)
  w = np.asarray(solvers.min_norm_simplex(jnp.asarray(flat @ flat.T))[0])
  ref = jax.tree_util.tree_map(lambda g: np.tensordot(w, np.asarray(g), 1), jac)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, ref)
  cos = flat @ flat.T / np.outer(np.linalg.norm(flat, axis=1), np.linalg.norm(flat, axis=1))
  np.testing.assert_allclose(metrics["cos/min"], cos[~np.eye(T, dtype=bool)].min(), rtol=1e-4)


def test_mgda_ub_feature_route():
  params, batch = _problem(2)
  m = get_method("mgda_ub", T)
  with pytest.raises(ValueError, match="FeatureSplit"):
    combine_gradients(m, m.init(params), _loss_fn(batch), params, 0)
  grads, _, losses, _, metrics = jax.jit(
      lambda s, p, b: combine_gradients(m, s, _split(b), p, 0))(m.init(params), params, batch)
  z = _features(params, batch)
  zj = jax.jacrev(lambda z: _head_losses(params, z, batch)[0])(z).reshape(T, -1)
  w = solvers.min_norm_simplex(zj @ zj.T)[0]
  np.testing.assert_allclose([metrics[f"weight/{i}"] for i in range(T)], w, atol=1e-5)
  ref = jax.grad(lambda p: jnp.dot(w, _loss_fn(batch)(p)[0]))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, ref)


# Options a method cannot do without (every other method builds from its defaults).
REQUIRED_OPTIONS = {"static": {"weights": (1.0, 2.0, 0.5)}}


def _method(name):
  return get_method(name, T, **REQUIRED_OPTIONS.get(name, {}))


# Gradient methods are jitted (with their state, over several steps) in test_aggregation.py; here the loss
# weighting methods and the feature route go through the jitted combine_gradients end to end.
@pytest.mark.parametrize("name", [n for n in known_methods() if _method(n).kind in ("loss", "features")])
def test_method_jits_and_keeps_state_structure(name):
  params, batch = _problem(3)
  m = _method(name)
  state = m.init(params)
  fn = jax.jit(lambda s, p, b, step: combine_gradients(m, s, _split(b), p, step))
  for step in range(2):
    grads, new_state, _, _, metrics = fn(state, params, batch, step)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    jax.tree_util.tree_map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(name), new_state,
                           state)
    state = new_state
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)), name
    assert all(np.isfinite(v) for v in metrics.values()), name
  assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(state))  # checkpointable


def test_all_method_states_are_arrays_and_donatable():
  params, _ = _problem(3)
  states = {name: _method(name).init(params) for name in known_methods()}
  for name, state in states.items():
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(state)), name
  # the train step donates the state: no buffer may appear twice
  jax.block_until_ready(jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x + 0, s), donate_argnums=0)(states))


def test_tx_composes_with_optax():
  params, batch = _problem(4)
  m = get_method("pcgrad", T)
  stacked = jax.jacrev(lambda p: _loss_fn(batch)(p)[0])(params)
  losses = _loss_fn(batch)(params)[0]
  combined, _, _ = jax.jit(m.combine_stacked)(stacked, losses, m.init(params), 0)
  for opt in (optax.sgd(0.1), optax.adam(0.01)):
    tx = optax.chain(m.tx, opt)
    state = tx.init(params)
    updates, state = jax.jit(lambda g, s, l: tx.update(g, s, params, task_losses=l))(stacked, state, losses)
    ref, _ = opt.update(combined, opt.init(params), params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), updates, ref)
    assert int(state[0]["count"]) == 1


def test_sharded_batch_matches_single_device():
  devices = np.array(jax.devices()[:8])
  assert devices.size == 8
  mesh = Mesh(devices, ("data",))
  params, batch = _problem(5)
  batch = {k: jnp.concatenate([v] * 2) for k, v in batch.items()}  # B = 16, two rows per device
  for name in ("equal", "db_mtl", "mgda_ub"):  # one per route: loss weights, task-stacked grads, features
    m = get_method(name, T)
    fn = lambda s, p, b: combine_gradients(m, s, _split(b), p, 0)[:3]
    single = jax.jit(fn)(m.init(params), params, batch)
    rep = NamedSharding(mesh, P())
    sharded_fn = jax.jit(fn, in_shardings=(rep, rep, NamedSharding(mesh, P("data"))), out_shardings=rep)
    out = sharded_fn(m.init(params), params, batch)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), out, single)


def test_masked_out_sample_contributes_nothing():
  params, batch = _problem(6)
  batch["mask"] = batch["mask"].at[2, :].set(0.0).at[:, 1].set(0.0)  # sample 2 unlabelled; task 1 has no labels
  # per-task gradients w.r.t. the inputs: the masked sample's row is exactly zero for every task
  jac_x = jax.jacrev(lambda x: _loss_fn({**batch, "x": x})(params)[0])(batch["x"])  # [T, B, DIN]
  assert np.all(np.asarray(jac_x)[:, 2] == 0.0)
  losses = _loss_fn(batch)(params)[0]
  assert float(losses[1]) == 0.0 and np.all(np.isfinite(losses))
  # changing the labels of masked-out samples changes no per-task gradient
  m = get_method("pcgrad", T)
  g1 = combine_gradients(m, m.init(params), _loss_fn(batch), params, 0)[0]
  batch2 = {**batch, "y": batch["y"].at[2].set(100.0).at[:, 1].set(-50.0)}
  g2 = combine_gradients(m, m.init(params), _loss_fn(batch2), params, 0)[0]
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), g1, g2)
  jac_p = jax.jacrev(lambda p: _loss_fn(batch)(p)[0])(params)
  assert all(np.all(np.asarray(v)[1] == 0.0) for v in jax.tree_util.tree_leaves(jac_p))


def test_masked_mean_values():
  v = jnp.array([1.0, 2.0, 3.0, 4.0])
  np.testing.assert_allclose(masked_mean(v, jnp.array([1.0, 0.0, 1.0, 0.0])), 2.0)
  np.testing.assert_allclose(masked_mean(v, None), 2.5)
  g = jax.grad(lambda v: masked_mean(v, jnp.zeros(4)))(v)
  assert float(masked_mean(v, jnp.zeros(4))) == 0.0 and np.all(np.asarray(g) == 0.0)
  with pytest.raises(ValueError):
    masked_mean(v, jnp.ones(3))


def test_input_validation():
  params, batch = _problem(7)
  with pytest.raises(ValueError, match="unknown multi-task method"):
    get_method("not_a_method", T)
  with pytest.raises(ValueError, match="num_tasks"):
    get_method("equal", 0)
  m = get_method("equal", T + 1)
  with pytest.raises(ValueError, match="losses"):
    combine_gradients(m, m.init(params), _loss_fn(batch), params, 0)
  m = get_method("pcgrad", T)
  with pytest.raises(ValueError, match="leading task axis"):
    m.tx.update({"w": jnp.ones((T + 1, 2))}, m.init(params), task_losses=jnp.ones(T))
  with pytest.raises(ValueError, match="features_grads"):
    get_method("mgda_ub", T).tx.update({"w": jnp.ones((T, 2))}, m.init(params), task_losses=jnp.ones(T))
