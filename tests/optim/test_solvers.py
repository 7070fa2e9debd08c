"""Solvers against brute force / scipy on tiny Gramians (the badly scaled families are in test_exact.py)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
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


def test_spd_solve():
  a = np.random.default_rng(1).normal(size=(5, 5))
  a = a @ a.T + 0.1 * np.eye(5)
  b = np.random.default_rng(2).normal(size=(5, 2))
  np.testing.assert_allclose(solvers.spd_solve(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)),
                             np.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


def test_min_norm_two_tasks_closed_form():
  g = np.array([[1.0, 0.0], [-0.5, 1.0]], np.float32)
  w, info = solvers.min_norm_simplex(jnp.asarray(g @ g.T))
  a = np.dot(g[1] - g[0], g[1]) / np.dot(g[0] - g[1], g[0] - g[1])  # Sener & Koltun's 2-task formula
  np.testing.assert_allclose(w, [a, 1 - a], atol=1e-6)
  assert float(info.capped) == 0.0 and float(info.residual) < 1e-5


def test_simplex_qp_with_linear_term_vs_scipy():
  g, m = _gram(1, 4, 6)
  q = np.random.default_rng(5).normal(size=4).astype(np.float32)
  w, info = solvers.simplex_qp(jnp.asarray(m), jnp.asarray(q))
  m64 = m.astype(np.float64)
  ref = _scipy_simplex(lambda x: 0.5 * x @ m64 @ x + q @ x, 4)
  obj = lambda x: 0.5 * x @ m64 @ x + q @ x  # noqa: E731
  assert obj(np.asarray(w, np.float64)) <= obj(ref) + 1e-5
  assert float(info.capped) == 0.0


def test_cagrad_weights_vs_scipy():
  g, m = _gram(2, 3, 4)
  c = 0.5
  v, info = solvers.cagrad_weights(jnp.asarray(m), c)
  m64 = m.astype(np.float64)
  b = np.full(3, 1 / 3)
  radius = c * np.sqrt(b @ m64 @ b)
  obj = lambda x: x @ m64 @ b + radius * np.sqrt(x @ m64 @ x + 1e-12)  # noqa: E731
  ref = _scipy_simplex(obj, 3)
  gw = ref @ g.astype(np.float64)
  d_ref = b @ g + radius * gw / np.linalg.norm(gw)
  np.testing.assert_allclose(np.asarray(v, np.float64) @ g, d_ref, rtol=1e-3, atol=1e-4)
  assert float(info.capped) == 0.0


def test_project_dual_cone_vs_brute_force():
  g, m = _gram(3, 3, 3)
  g[1] = -g[0] + 0.3 * g[2]  # force conflicts
  m = g @ g.T
  u, info = solvers.project_dual_cone(jnp.asarray(m), jnp.eye(3))
  u = np.asarray(u, np.float64)
  for i in range(3):
    best = np.inf
    for free in itertools.chain.from_iterable(itertools.combinations(range(3), k) for k in range(4)):
      x = np.eye(3)[i].astype(np.float64)
      f = list(free)
      if f:
        fixed = [j for j in range(3) if j not in f]
        x[f] = np.linalg.lstsq(m[np.ix_(f, f)], -m[np.ix_(f, fixed)] @ x[fixed], rcond=None)[0]
      if np.all(x >= np.eye(3)[i] - 1e-9):
        best = min(best, x @ m @ x)
    assert u[i] @ m @ u[i] <= best * (1 + 1e-5) + 1e-6
    assert np.all(u[i] >= np.eye(3)[i] - 1e-6)
    assert np.all(g @ (g.T @ u[i]) >= -1e-4 * np.abs(g).max() ** 2)  # projection lies in the dual cone


def test_iteration_cap_is_reported():
  g = np.random.default_rng(4).normal(size=(6, 8)).astype(np.float32)
  g[1] = -g[0]
  _, info = solvers.min_norm_simplex(jnp.asarray(g @ g.T), max_iter=1)
  assert float(info.capped) == 1.0 and int(info.iters) == 1


def test_bargaining_alpha_half():
  g, m = _gram(4, 3, 6)
  w, info = solvers.bargaining(jnp.asarray(m), 0.5)
  w = np.asarray(w, np.float64)
  assert np.all(w > 0) and float(info.capped) == 0.0
  np.testing.assert_allclose(m.astype(np.float64) @ w, w ** -2.0, rtol=2e-3)


def _cos(g):
  n = np.linalg.norm(g, axis=1)
  keep = n > 0
  u = np.where(keep[:, None], g / np.where(keep, n, 1.0)[:, None], 0.0)
  return u @ u.T, keep


def test_cosine_solve_matches_pinv_full_rank_singular_and_zero_rows():
  """C^+ b against float64 numpy pinv on: near-parallel (cos 0.999) and badly scaled full-rank rows (the Cholesky
  path), an exactly duplicated task and T = 4 rows in 3-D (rank-deficient: the eigh path), and a zero row."""
  rng = np.random.default_rng(3)
  base = rng.normal(size=(4, 6))
  near = base.copy()
  near[1] = near[0] + 0.045 * np.linalg.norm(near[0]) * rng.normal(size=6) / np.sqrt(6)
  dup = base.copy()
  dup[2] = 3.0 * dup[0]
  dup_near = base.copy()  # singular to float32 working precision (lambda_min ~ 1e-7, finite pivots): eigh path
  dup_near[2] = 3.0 * dup_near[0] + 1e-3 * np.linalg.norm(dup_near[0]) * rng.normal(size=6)
  low = rng.normal(size=(4, 3))
  zero = base * np.array([1.0, 1e-4, 0.0, 1e3])[:, None]
  b = np.array([1.0, 2.0, 0.5, 1.5])
  fn = jax.jit(solvers.cosine_solve)
  for name, g in [("near", near), ("scaled", base * np.logspace(0, 4, 4)[:, None]), ("dup", dup),
                  ("dup_near", dup_near), ("low", low), ("zero", zero)]:
    c64, keep = _cos(g)
    ref = np.zeros(4)
    # pinv's own cut-off relative to float32 (what a float32 solver can resolve), on the float64 cosines
    ref[keep] = np.linalg.pinv(c64[np.ix_(keep, keep)], rtol=40 * np.finfo(np.float32).eps, hermitian=True) @ b[keep]
    c32, _, z = solvers.rescale(jnp.asarray(g @ g.T, jnp.float32))
    got = np.asarray(fn(c32, jnp.asarray(b, jnp.float32), ~z), np.float64)
    np.testing.assert_array_equal(np.asarray(~z), keep)
    tol = 5e-3 if name == "near" else 1e-4  # near: cond(C) ~ 2e3, float32 Gramian
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=name)
