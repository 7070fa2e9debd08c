"""ConFIG, DualProj, STCH, ExcessMTL, MoCo, MoDo, SDMGrad: defining properties and written-out update rules,
checked in float64 numpy on small, badly scaled gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from mtl.optim import get_method

# three tasks: norms 1e-2 .. 1e2, tasks 0 and 1 nearly opposed, in 6-D
_RNG = np.random.default_rng(0)
G = _RNG.normal(size=(3, 6))
G[1] = -G[0] + 0.1 * _RNG.normal(size=6)
G = (G / np.linalg.norm(G, axis=1, keepdims=True) * np.array([[1e-2], [1.0], [1e2]])).astype(np.float32)
LOSSES = np.array([0.5, 2.0, 1.0], np.float32)

_JIT = {}


def combine(name, g, losses=None, state=None, step=0, **kwargs):
  key = (name, g.shape, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
  if key not in _JIT:
    m = get_method(name, g.shape[0], **kwargs)
    _JIT[key] = (m, jax.jit(m.combine_stacked))
  m, fn = _JIT[key]
  state = m.init({"x": jnp.zeros(g.shape[1:])}) if state is None else state
  losses = np.resize(LOSSES, g.shape[0]) if losses is None else losses
  out, state, metrics = fn({"x": jnp.asarray(g)}, jnp.asarray(losses), state, jnp.int32(step))
  return np.asarray(out["x"], np.float64), state, metrics


def _proj_simplex(v):
  u = np.sort(v)[::-1]
  css = np.cumsum(u) - 1
  rho = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
  return np.maximum(v - css[rho] / (rho + 1), 0)


def test_config_equal_cosines_and_length():
  for g in (G, np.concatenate([G, np.zeros((1, 6), np.float32)])):
    d, _, _ = combine("config", g)
    g64 = g.astype(np.float64)
    nz = np.linalg.norm(g64, axis=1) > 0
    cos = g64[nz] @ d / (np.linalg.norm(g64[nz], axis=1) * np.linalg.norm(d))
    np.testing.assert_allclose(cos, cos[0], rtol=1e-3)
    assert cos[0] > 0
    # length = sum of the gradients' projections on the direction; reference: pinv of the unit vectors
    units = g64[nz] / np.linalg.norm(g64[nz], axis=1, keepdims=True)
    v = np.linalg.pinv(units) @ np.ones(nz.sum())
    v /= np.linalg.norm(v)
    np.testing.assert_allclose(d, np.sum(g64 @ v) * v, rtol=1e-3, atol=1e-6 * np.abs(g64).max())


def test_dualproj_is_projection_of_mean_onto_dual_cone():
  d, _, metrics = combine("dualproj", G)
  g64 = G.astype(np.float64)
  p = np.full(3, 1 / 3)
  v, _ = nnls(g64.T, -(g64.T @ p))
  ref = g64.T @ (p + v)
  np.testing.assert_allclose(d, ref, rtol=1e-4, atol=1e-7 * np.abs(g64).max())
  assert np.all(g64 @ d >= -1e-4 * np.linalg.norm(g64, axis=1) * np.linalg.norm(d))
  assert float(metrics["solver/capped"]) == 0.0
  # no conflict of the mean with any task: d is the mean
  g_ok = np.array([[1.0, 0.1], [0.2, 1.0]], np.float32)
  d_ok, _, _ = combine("dualproj", g_ok)
  np.testing.assert_allclose(d_ok, g_ok.mean(0), rtol=1e-6)


def test_stch_weights_are_the_gradient_of_the_scalarisation():
  mu, warm = 0.5, 2
  state = None
  seen = []
  for step, losses in enumerate([np.array([1.0, 4.0, 2.0]), np.array([3.0, 2.0, 2.0]), np.array([0.5, 5.0, 1.0])]):
    losses = losses.astype(np.float32)
    g = np.eye(3, dtype=np.float32)  # d = the weights
    d, state, _ = combine("stch", g, losses=losses, state=state, step=step, mu=mu, warmup_steps=warm)
    if step < warm:
      np.testing.assert_allclose(d, 1 / losses, rtol=1e-6)  # grad of sum log L
      seen.append(losses)
    else:
      z = np.mean(seen, 0)
      f = lambda l: 3 * mu * jnp.log(jnp.sum(jnp.exp(jnp.log(l / z) / mu)))  # noqa: E731
      np.testing.assert_allclose(d, np.asarray(jax.grad(f)(jnp.asarray(losses, jnp.float32))), rtol=1e-5)


def test_excess_mtl_matches_written_out_rule():
  eta = 0.5
  state, acc, lam, init = None, np.zeros_like(G, np.float64), np.ones(3), None
  for step in range(3):
    g = G * (1 + 0.5 * step)
    d, state, _ = combine("excess_mtl", g, state=state, step=step, step_size=eta)
    acc += g.astype(np.float64) ** 2
    e = np.sum(g.astype(np.float64) ** 2 / np.sqrt(acc + 1e-7), axis=1)
    if init is None:
      init = e
    else:
      lam = lam * np.exp(eta * e / init)
      lam = 3 * lam / lam.sum()
    np.testing.assert_allclose(d, lam @ g.astype(np.float64), rtol=1e-4)


def _softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


@pytest.mark.parametrize("lambda_update,lambda_map", [("projection", _proj_simplex), ("softmax", _softmax)])
def test_moco_matches_written_out_rule(lambda_update, lambda_map):
  beta, gamma, rho = 0.5, 0.1, 0.01
  state, y, lam = None, np.zeros_like(G, np.float64), np.full(3, 1 / 3)
  for step in range(3):
    g = G * (1 + step)
    d, state, _ = combine("moco", g, state=state, step=step, beta=beta, gamma=gamma, rho=rho,
                          lambda_update=lambda_update)
    h = g.astype(np.float64) / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) * LOSSES[:, None]
    t = step + 1
    y = y - beta / t ** 0.5 * (y - h)
    lam = lambda_map(lam - gamma / t ** 0.5 * (y @ y.T + rho * np.eye(3)) @ lam)
    np.testing.assert_allclose(d, lam @ y, rtol=1e-4, atol=1e-7)
    assert abs(lam.sum() - 1) < 1e-9


def test_modo_matches_written_out_rule():
  gamma, rho = 1e-5, 0.1
  state, lam = None, np.full(3, 1 / 3)
  for step in range(3):
    d, state, metrics = combine("modo", G, state=state, step=step, gamma=gamma, rho=rho)
    m = G.astype(np.float64) @ G.T.astype(np.float64)
    lam = _proj_simplex(lam - gamma * (m @ lam + rho * lam))
    np.testing.assert_allclose([float(metrics[f"weight/{i}"]) for i in range(3)], lam, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d, lam @ G.astype(np.float64), rtol=1e-4)


def test_sdmgrad_matches_reference_loop_and_limits():
  lamda, niter = 0.3, 20
  m = G.astype(np.float64) @ G.T.astype(np.float64)
  scale = np.mean(np.sqrt(np.diag(m)))
  gn = m / (scale ** 2 + 1e-8)
  w, buf = np.full(3, 1 / 3), np.zeros(3)
  for _ in range(niter):  # torch SGD(lr=5, momentum=0.5): buf = 0.5 buf + grad; w -= lr buf; project
    buf = 0.5 * buf + gn @ w + lamda * gn.mean(1)
    w = _proj_simplex(w - 5 * buf)
  d, state, _ = combine("sdmgrad", G, lamda=lamda, niter=niter)
  np.testing.assert_allclose(np.asarray(state["w"]), w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(d, (w @ G.astype(np.float64) + lamda * G.mean(0)) / (1 + lamda), rtol=1e-4)


@pytest.mark.parametrize("name,kwargs", [("config", {"pref": (1.0, -1.0, 1.0)}), ("dualproj", {"pref": (0, 0, 0)}),
                                         ("stch", {"mu": 0.0}), ("excess_mtl", {"step_size": 0}),
                                         ("moco", {"beta": 2.0}), ("moco", {"lambda_update": "mean"}),
                                         ("modo", {"gamma": -1.0}), ("sdmgrad", {"niter": 0})])
def test_bad_options(name, kwargs):
  with pytest.raises(ValueError):
    get_method(name, 3, **kwargs)
