"""Solvers against brute force / scipy on tiny Gramians."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from mtl.optim import solvers


def _gram(seed, t, d):
  g = np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)
  return g, g @ g.T


def _scipy_simplex(fun, t):
  cons = ({"type": "eq", "fun": lambda x: np.sum(x) - 1.0},)
  res = optimize.minimize(fun, np.full(t, 1.0 / t), bounds=[(0, 1)] * t, constraints=cons, method="SLSQP",
                          options={"ftol": 1e-12, "maxiter": 1000})
  return res.x


def test_project_simplex_matches_qp():
  rng = np.random.default_rng(0)
  for _ in range(5):
    v = rng.normal(size=4).astype(np.float32) * 2
    got = np.asarray(solvers.project_simplex(jnp.asarray(v)))
    ref = _scipy_simplex(lambda x: np.sum((x - v) ** 2), 4)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert abs(got.sum() - 1) < 1e-5 and got.min() >= 0


def test_min_norm_two_tasks_closed_form():
  g = np.array([[1.0, 0.0], [-0.5, 1.0]], np.float32)
  w = np.asarray(solvers.min_norm_simplex(jnp.asarray(g @ g.T)))
  a = np.dot(g[1] - g[0], g[1]) / np.dot(g[0] - g[1], g[0] - g[1])  # Sener & Koltun's 2-task formula
  np.testing.assert_allclose(w, [a, 1 - a], atol=1e-5)


def test_min_norm_three_tasks_vs_scipy():
  g, m = _gram(1, 3, 5)
  w = np.asarray(solvers.min_norm_simplex(jnp.asarray(m)))
  ref = _scipy_simplex(lambda x: x @ m.astype(np.float64) @ x, 3)
  assert w @ m @ w <= ref @ m @ ref + 1e-5


def test_cagrad_inner_vs_scipy():
  g, m = _gram(2, 3, 4)
  c = 0.5 * np.sqrt(m.mean())
  w = np.asarray(solvers.cagrad_inner(jnp.asarray(m), jnp.float32(c)))
  m64 = m.astype(np.float64)
  obj = lambda x: x @ m64 @ np.full(3, 1 / 3) + c * np.sqrt(x @ m64 @ x + 1e-12)
  ref = _scipy_simplex(obj, 3)
  assert obj(w) <= obj(ref) + 1e-4


def test_nonneg_qp_rows_vs_brute_force():
  g, m = _gram(3, 3, 3)
  g[1] = -g[0] + 0.3 * g[2]  # force conflicts
  m = g @ g.T
  u = np.asarray(solvers.nonneg_qp_rows(jnp.asarray(m), jnp.eye(3)))
  for i in range(3):
    # brute force over active sets: minimise over u >= e_i with a subset of free coordinates
    best = np.inf
    for free in itertools.chain.from_iterable(itertools.combinations(range(3), k) for k in range(4)):
      x = np.eye(3)[i].astype(np.float64)
      f = list(free)
      if f:
        fixed = [j for j in range(3) if j not in f]
        sol = np.linalg.lstsq(m[np.ix_(f, f)], -m[np.ix_(f, fixed)] @ x[fixed], rcond=None)[0]
        x[f] = sol
      if np.all(x >= np.eye(3)[i] - 1e-9):
        best = min(best, x @ m @ x)
    assert u[i] @ m @ u[i] <= best + 1e-4
    assert np.all(u[i] >= np.eye(3)[i] - 1e-6)
    assert np.all(g @ (g.T @ u[i]) >= -1e-3)  # projection lies in the dual cone


@pytest.mark.parametrize("alpha", [0.5])  # 1 and 2 are checked through nash_mtl / fairgrad
def test_power_fixed_point(alpha):
  g, m = _gram(4, 3, 6)
  w = np.asarray(solvers.power_fixed_point(jnp.asarray(m), alpha, ridge=0.0))
  assert np.all(w > 0)
  np.testing.assert_allclose(m @ w, w ** (-1 / alpha), rtol=1e-4)
