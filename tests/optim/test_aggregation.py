"""Gradient-aggregation methods on small hand-checked cases (conflicting 2-D quadratics and random G)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from mtl.optim import get_method
from mtl.optim import surgery
from mtl.optim.base import step_key

# Two conflicting quadratics L_i = |x - c_i|^2 / 2 at x: gradients g_i = x - c_i, cos(g1, g2) < 0.
G2 = np.array([[1.0, 0.0], [-0.5, 1.0]], np.float32)
LOSSES2 = 0.5 * np.sum(G2 ** 2, axis=1)


def _g3(seed=0, d=5):
  g = np.random.default_rng(seed).normal(size=(3, d)).astype(np.float32)
  g[1] = -0.7 * g[0] + 0.5 * g[1]  # make a conflict
  return g


_JITTED = {}


def combine(name, g, losses=None, state=None, step=0, **kwargs):
  """One jitted combine per (method, options, shape): repeated calls do not recompile."""
  key = (name, g.shape, tuple(sorted(kwargs.items())))
  if key not in _JITTED:
    m = get_method(name, g.shape[0], **kwargs)
    _JITTED[key] = (m, jax.jit(m.combine_stacked))
  m, fn = _JITTED[key]
  params = {"x": jnp.zeros(g.shape[1:])}
  state = m.init(params) if state is None else state
  losses = np.ones(g.shape[0], np.float32) if losses is None else losses
  out, state, metrics = fn({"x": jnp.asarray(g)}, jnp.asarray(losses), state, jnp.int32(step))
  return np.asarray(out["x"]), state, metrics


def test_mgda_min_norm_point():
  d, _, metrics = combine("mgda", G2)
  a = np.dot(G2[1] - G2[0], G2[1]) / np.sum((G2[0] - G2[1]) ** 2)
  np.testing.assert_allclose(d, a * G2[0] + (1 - a) * G2[1], atol=1e-5)
  np.testing.assert_allclose(d @ G2[0], d @ G2[1], atol=1e-5)  # min-norm point inside the hull: equal dots
  np.testing.assert_allclose(metrics["weight/0"] + metrics["weight/1"], 1.0, atol=1e-6)


def test_mgda_l2_normalisation_solves_on_unit_gradients():
  g = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
  _, _, metrics = combine("mgda", g, normalize="l2")
  np.testing.assert_allclose([metrics["weight/0"], metrics["weight/1"]], [0.5, 0.5], atol=1e-5)


def test_pcgrad_two_tasks_by_hand():
  d, _, _ = combine("pcgrad", G2)
  g1p = G2[0] - (G2[0] @ G2[1]) / (G2[1] @ G2[1]) * G2[1]   # [0.8, 0.4]
  g2p = G2[1] - (G2[0] @ G2[1]) / (G2[0] @ G2[0]) * G2[0]   # [0, 1]
  np.testing.assert_allclose(d, g1p + g2p, atol=1e-6)
  np.testing.assert_allclose(d, [0.8, 1.4], atol=1e-6)


def _pcgrad_ref(g, orders):
  out = g.astype(np.float64).copy()
  for i in range(len(g)):
    for j in orders[i]:
      dot = out[i] @ g[j]
      if dot < 0:
        out[i] -= dot / (g[j] @ g[j]) * g[j]
  return out.sum(0)


def test_pcgrad_three_tasks_matches_loop_reference():
  g = _g3()
  for step in range(3):
    d, _, _ = combine("pcgrad", g, step=step, seed=5)
    orders = np.asarray(surgery._orders(5, step, 3))
    np.testing.assert_allclose(d, _pcgrad_ref(g, orders), rtol=1e-4, atol=1e-5)


def _gradvac_ref(g, orders, rho, beta):
  out = g.astype(np.float64).copy()
  rho = rho.astype(np.float64).copy()
  for i in range(len(g)):
    for j in orders[i]:
      if j == i:
        continue
      phi = out[i] @ g[j] / (np.linalg.norm(out[i]) * np.linalg.norm(g[j]))
      if phi < rho[i, j]:
        w = np.linalg.norm(out[i]) * (rho[i, j] * np.sqrt(1 - phi ** 2) - phi * np.sqrt(1 - rho[i, j] ** 2)) / (
            np.linalg.norm(g[j]) * np.sqrt(1 - rho[i, j] ** 2))
        out[i] += w * g[j]
      rho[i, j] = (1 - beta) * rho[i, j] + beta * phi
  return out.sum(0), rho


def test_gradvac_matches_loop_reference_over_steps():
  g = _g3(1)
  state = None
  rho = np.zeros((3, 3))
  for step in range(3):
    gs = g * (1 + 0.1 * step)
    d, state, _ = combine("gradvac", gs, state=state, step=step, beta=0.5, seed=2)
    ref, rho = _gradvac_ref(gs, np.asarray(surgery._orders(2, step, 3)), rho, 0.5)
    np.testing.assert_allclose(d, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state["targets"], rho, atol=1e-5)


def test_cagrad_zero_c_is_mean():
  g = _g3()
  d, _, _ = combine("cagrad", g, c=0.0)
  np.testing.assert_allclose(d, g.mean(0), rtol=1e-5, atol=1e-6)


def test_cagrad_matches_reference_solution():
  g = _g3(2)
  c, t = 0.4, 3
  d, _, _ = combine("cagrad", g, c=c, rescale=1)
  m = (g @ g.T).astype(np.float64)
  radius = c * np.sqrt(m.mean() + 1e-8)
  obj = lambda x: x @ m @ np.full(t, 1 / t) + radius * np.sqrt(x @ m @ x + 1e-8)
  res = optimize.minimize(obj, np.full(t, 1 / t), bounds=[(0, 1)] * t, method="SLSQP",
                          constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},), options={"ftol": 1e-12})
  gw = res.x @ g
  ref = (g.mean(0) + radius / np.linalg.norm(gw) * gw) / (1 + c ** 2)
  np.testing.assert_allclose(d, ref, rtol=2e-3, atol=2e-4)


def test_imtl_g_equal_projections():
  g = _g3(3)
  d, _, metrics = combine("imtl_g", g)
  proj = g @ d / np.linalg.norm(g, axis=1)
  np.testing.assert_allclose(proj, proj[0], rtol=1e-4)
  np.testing.assert_allclose(sum(metrics[f"weight/{i}"] for i in range(3)), 1.0, atol=1e-5)


def test_nash_mtl_bargaining_solution():
  g = _g3(4)
  m = g @ g.T
  d, _, metrics = combine("nash_mtl", g)
  a = np.array([metrics[f"weight/{i}"] for i in range(3)])
  np.testing.assert_allclose(m @ a, 1 / a, rtol=1e-3)
  np.testing.assert_allclose(d @ d, 3.0, rtol=1e-3)  # the paper's step, whatever the gradients' scale
  d10, _, _ = combine("nash_mtl", 10 * g)
  np.testing.assert_allclose(d10, d, rtol=1e-4, atol=1e-6)
  # reference code's scale: solves on M / |M|_F
  _, _, metrics = combine("nash_mtl", g, step_scale="reference_code")
  a = np.array([metrics[f"weight/{i}"] for i in range(3)])
  np.testing.assert_allclose(m / np.linalg.norm(m) @ a, 1 / a, rtol=1e-3)
  # max_norm clips the combined gradient
  d, _, _ = combine("nash_mtl", g, max_norm=1.0)
  np.testing.assert_allclose(np.linalg.norm(d), 1.0, rtol=1e-4)


def test_fairgrad_alpha_fairness_condition():
  g = _g3(5)
  _, _, metrics = combine("fairgrad", g, alpha=2.0)
  w = np.array([metrics[f"weight/{i}"] for i in range(3)])
  np.testing.assert_allclose((g @ g.T) @ w, w ** -0.5, rtol=1e-3)


def test_aligned_mtl_orthogonal_equal_norm_components():
  g = _g3(6)
  from mtl.optim.aligned import aligned_matrix
  b = np.asarray(aligned_matrix(jnp.asarray(g @ g.T)))
  aligned = b @ g
  lam_min = np.linalg.eigvalsh((g @ g.T).astype(np.float64))[0]
  np.testing.assert_allclose(aligned @ aligned.T, lam_min * np.eye(3), atol=1e-3 * lam_min + 1e-5)
  d, _, _ = combine("aligned_mtl", g)
  np.testing.assert_allclose(d, aligned.sum(0), rtol=1e-4, atol=1e-5)
  # rank-deficient G (T=3 in 2-D) stays finite and uses the non-zero spectrum only
  d, _, _ = combine("aligned_mtl", np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32))
  assert np.all(np.isfinite(d))


def test_upgrad_non_conflicting():
  g = _g3(7)
  d, _, _ = combine("upgrad", g)
  assert np.all(g @ d >= -1e-4 * np.linalg.norm(d) * np.linalg.norm(g, axis=1))
  # two tasks: mean of the PCGrad projections
  d2, _, _ = combine("upgrad", G2)
  np.testing.assert_allclose(d2, np.array([0.8, 1.4]) / 2, atol=1e-5)
  # no conflict: the mean gradient
  g_ok = np.array([[1.0, 0.2], [0.3, 1.0]], np.float32)
  d3, _, _ = combine("upgrad", g_ok)
  np.testing.assert_allclose(d3, g_ok.mean(0), atol=1e-6)


def test_graddrop_by_hand():
  g = np.array([[1.0, -2.0, 0.5, 3.0], [-1.0, -1.0, 0.5, -1.0]], np.float32)
  d, _, _ = combine("graddrop", g, step=4, seed=1)
  u = np.asarray(jax.random.uniform(jax.random.fold_in(step_key(1, 4), 0), (4,)))
  p = 0.5 * (1 + g.sum(0) / np.abs(g).sum(0))
  keep = ((p > u) & (g > 0)) | ((p < u) & (g < 0))
  np.testing.assert_allclose(d, (keep * g).sum(0), atol=1e-6)
  np.testing.assert_allclose(d[1:3], [-3.0, 1.0])  # pure-sign coordinates keep everything
  full, _, _ = combine("graddrop", g, leak=1.0)
  np.testing.assert_allclose(full, g.sum(0), atol=1e-6)


def test_gradnorm_weight_update_by_hand():
  g = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
  lr, alpha = 0.1, 1.5
  d0, state, m0 = combine("gradnorm", g, losses=np.array([1.0, 1.0], np.float32), lr=lr, alpha=alpha)
  np.testing.assert_allclose(d0, g.sum(0))  # weights start at 1
  # step 0: r = 1, target = mean(w|g|) = 1.5; signs: (2 - 1.5) > 0, (1 - 1.5) < 0; Adam's first step = lr*sign
  w1 = np.array([1 - lr, 1 + lr])
  np.testing.assert_allclose(state["weights"], 2 * w1 / w1.sum(), rtol=1e-5)
  d1, _, m1 = combine("gradnorm", g, losses=np.array([0.5, 1.0], np.float32), state=state, step=1, lr=lr)
  np.testing.assert_allclose(d1, (np.asarray(state["weights"])[:, None] * g).sum(0), rtol=1e-6)


def test_db_mtl_matches_reference():
  g = _g3(8)
  losses = np.array([0.5, 2.0, 1.0], np.float32)
  state, buf = None, np.zeros_like(g, dtype=np.float64)
  for step in range(2):
    d, state, _ = combine("db_mtl", g * (step + 1), losses=losses, state=state, step=step)
    lg = g * (step + 1) / (losses[:, None] + 1e-8)
    buf = lg + 0.9 / (step + 1) ** 0.5 * (buf - lg)
    n = np.linalg.norm(buf, axis=1)
    np.testing.assert_allclose(d, ((n.max() / (n + 1e-8))[:, None] * buf).sum(0), rtol=1e-4)


@pytest.mark.parametrize("name,kwargs", [("cagrad", {"c": -1.0}), ("mgda", {"normalize": "max"}),
                                         ("gradvac", {"beta": 0.0}), ("graddrop", {"leak": 2.0}),
                                         ("fairgrad", {"alpha": 0.0}), ("pcgrad", {"nope": 1})])
def test_bad_options(name, kwargs):
  with pytest.raises(ValueError):
    get_method(name, 2, **kwargs)
