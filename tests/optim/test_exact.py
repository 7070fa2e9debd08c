"""Exactness of the Gramian methods on badly scaled families, against plain float64 references written here.

Families (T = 2, 3, 5, 8): random gradients with norms spread over 1 .. 1e4, a near-opposed pair (cos ~ -0.999),
a near-parallel pair (cos ~ 0.999) and a zero row (a task without labels in the batch). The methods run in
float32 through the jitted `combine_stacked` (one compile per method and T); the references and every property
are evaluated in float64 on the same float32 gradients. A float64 run (jax x64) is checked at tight tolerance.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from mtl.optim import get_method, solvers

KINDS = ("random", "opposed", "parallel", "zero")
SPREADS = (1.0, 1e2, 1e4)
TS = (2, 3, 5, 8)


def family(t, kind, spread, seed=0):
  rng = np.random.default_rng([t, KINDS.index(kind), int(np.log10(spread)), seed])
  d = t + 3
  g = rng.normal(size=(t, d))
  if kind == "opposed":
    g[1] = -g[0] + 0.045 * np.linalg.norm(g[0]) * rng.normal(size=d) / np.sqrt(d)
  if kind == "parallel":
    g[1] = g[0] + 0.045 * np.linalg.norm(g[0]) * rng.normal(size=d) / np.sqrt(d)
  g /= np.linalg.norm(g, axis=1, keepdims=True)
  g *= rng.permutation(np.logspace(0, np.log10(spread), t))[:, None]
  if kind == "zero":
    g[rng.integers(t)] = 0.0
  return g.astype(np.float32)


def cases(ts=TS):
  return [(t, k, s) for t in ts for k in KINDS for s in SPREADS]


_JIT = {}


def run(name, g, dtype=np.float32, **kw):
  """(d float64 [D], weights float64 [T], metrics) of method `name` on the gradient rows g."""
  t = g.shape[0]
  key = (name, t, g.shape[1], np.dtype(dtype).name, tuple(sorted(kw.items())))
  if key not in _JIT:
    m = get_method(name, t, **kw)
    _JIT[key] = (m, jax.jit(m.combine_stacked))
  m, fn = _JIT[key]
  params = {"x": jnp.zeros(g.shape[1:], dtype)}
  out, _, metrics = fn({"x": jnp.asarray(g, dtype)}, jnp.ones(t, jnp.float32), m.init(params), jnp.int32(0))
  w = np.array([float(metrics[f"weight/{i}"]) for i in range(t)])
  return np.asarray(out["x"], np.float64), w, {k: float(v) for k, v in metrics.items()}


def unit_scale(g):
  n = np.linalg.norm(g, axis=1)
  return np.where(n > 0, n, 1.0)


# ---------------------------------------------------------------- float64 references
def mgda_ref(g):
  """Enumerate supports; solve each equality-constrained KKT system in the cosine variables (exact in f64)."""
  g = g.astype(np.float64)
  t = len(g)
  zero = np.linalg.norm(g, axis=1) == 0
  if zero.any():
    return np.zeros(g.shape[1])
  s = np.linalg.norm(g, axis=1)
  c = (g / s[:, None]) @ (g / s[:, None]).T
  best, best_d = np.inf, None
  for k in range(1, t + 1):
    for sup in itertools.combinations(range(t), k):
      sup = list(sup)
      kkt = np.zeros((k + 1, k + 1))
      kkt[:k, :k] = c[np.ix_(sup, sup)]
      kkt[:k, k] = kkt[k, :k] = 1.0 / s[sup]
      sol = np.linalg.lstsq(kkt, np.r_[np.zeros(k), 1.0], rcond=1e-14)[0]
      if np.all(sol[:k] >= 0):
        d = (sol[:k] / s[sup]) @ g[sup]
        if d @ d < best:
          best, best_d = d @ d, d
  return best_d


def upgrad_ref(g):
  """u_i = e_i + v, v = nnls(G^T, -g_i): the projection of g_i onto the dual cone is G^T u_i."""
  g = g.astype(np.float64)
  t = len(g)
  us = [np.eye(t)[i] + nnls(g.T, -g[i], maxiter=10_000)[0] for i in range(t)]
  return np.mean(us, 0) @ g, us


def imtl_ref(g):
  """The paper's closed form on the non-zero rows: a_{2:}^T = (g_1 U^T)(D U^T)^-1, a_1 = 1 - sum a_{2:}."""
  g = g.astype(np.float64)
  keep = np.linalg.norm(g, axis=1) > 0
  h = g[keep]
  u = h / np.linalg.norm(h, axis=1, keepdims=True)
  du = h[0:1] - h[1:]
  uu = u[0:1] - u[1:]
  rest = (h[0] @ uu.T) @ np.linalg.inv(du @ uu.T)
  return np.r_[1 - rest.sum(), rest] @ h


def aligned_ref(g):
  g = g.astype(np.float64)
  m = g @ g.T
  lam, v = np.linalg.eigh(m)
  keep = lam > lam.max() * 1e-12
  b = np.sqrt(lam[keep].min()) * (v[:, keep] / np.sqrt(lam[keep])) @ v[:, keep].T
  return b.sum(0) @ g


def rel(a, b):
  return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("t", TS)
def test_mgda_certificate_and_reference(t):
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    d, w, met = run("mgda", g)
    g64 = g.astype(np.float64)
    assert met["solver/capped"] == 0.0
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-5, (kind, spread, w)
    np.testing.assert_allclose(d, w @ g64, rtol=1e-5, atol=1e-6 * np.abs(g64).max())
    ref = mgda_ref(g)
    nd = np.linalg.norm(d)
    # g_i . d >= |d|^2 (with d in the hull this certifies minimality), up to float32 rounding of cosines
    viol = (g64 @ d - d @ d) / (unit_scale(g64) * max(nd, 1e-30))
    assert viol.min() >= -5e-4, (kind, spread, viol)
    # |d - d*|^2 <= |d|^2 - |d*|^2 for the min-norm point d*: compare at the scale of the smallest task
    smin = np.min(np.where(np.linalg.norm(g64, axis=1) > 0, np.linalg.norm(g64, axis=1), np.inf))
    assert np.linalg.norm(d - ref) <= 2e-3 * smin + 1e-4 * np.linalg.norm(ref), (kind, spread, d, ref)


@pytest.mark.parametrize("t", TS)
def test_upgrad_dual_cone_and_nnls(t):
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    d, _, met = run("upgrad", g)
    g64 = g.astype(np.float64)
    ref, us = upgrad_ref(g)
    assert met["solver/capped"] == 0.0
    assert rel(d, ref) < 2e-3, (kind, spread, rel(d, ref))
    # J d >= 0: never conflicts with a task
    assert np.all(g64 @ d >= -1e-4 * unit_scale(g64) * np.linalg.norm(d)), (kind, spread, g64 @ d)
    # NNLS characterisation of each projection: u >= e_i, G G^T u >= 0, complementary slackness
    u, _ = solvers.project_dual_cone(jnp.asarray(g @ g.T), jnp.eye(t))
    u = np.asarray(u, np.float64)
    m = g64 @ g64.T
    s = unit_scale(g64)
    for i in range(t):
      assert np.all(u[i] >= np.eye(t)[i] - 1e-6)
      scaled_mu = (m @ u[i]) / (s * max(np.linalg.norm(g64.T @ u[i]), 1e-30))
      assert scaled_mu.min() >= -1e-4, (kind, spread, i, scaled_mu)
      slack = u[i] - np.eye(t)[i]
      assert np.all(np.abs(scaled_mu[slack > 1e-6 * np.abs(slack).max()]) < 1e-4), (kind, spread, i)


@pytest.mark.parametrize("t", TS)
def test_nash_mtl_bargaining_and_step_size(t):
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    d, a, met = run("nash_mtl", g)
    g64 = g.astype(np.float64)
    m = g64 @ g64.T
    nz = np.diag(m) > 0
    assert met["solver/capped"] == 0.0, (kind, spread, met)
    assert np.all(a[nz] > 0) and np.all(a[~nz] == 0)
    # G G^T a = 1/a on the tasks with a gradient, and |d|^2 = number of such tasks (the paper's step)
    np.testing.assert_allclose((m @ a)[nz] * a[nz], 1.0, atol=5e-3, err_msg=f"{kind} {spread}")
    np.testing.assert_allclose(d @ d, nz.sum(), rtol=2e-3, err_msg=f"{kind} {spread}")


def test_nash_mtl_reference_code_scale():
  g = family(3, "random", 1e2)
  _, a, _ = run("nash_mtl", g)
  _, a_ref, _ = run("nash_mtl", g, step_scale="reference_code")
  m = (g @ g.T).astype(np.float64)
  np.testing.assert_allclose(a_ref, a * np.sqrt(np.linalg.norm(m)), rtol=1e-4)


@pytest.mark.parametrize("t", (2, 5))
def test_fairgrad_fixed_point(t):
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    _, a, met = run("fairgrad", g, alpha=2.0)
    m = g.astype(np.float64) @ g.astype(np.float64).T
    nz = np.diag(m) > 0
    # float32 floor: on a cos -0.999 pair alpha = 2 can stop at the iteration cap (reported) with residual < 1e-2
    assert met["solver/capped"] == 0.0 or met["solver/residual"] < 1e-2, (kind, spread, met)
    np.testing.assert_allclose((m @ a)[nz] * a[nz] ** 0.5, 1.0, atol=1e-2, err_msg=f"{kind} {spread}")


@pytest.mark.parametrize("t", (2, 3, 5))
def test_cagrad_optimality_conditions(t):
  c = 0.4
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    d, v, met = run("cagrad", g, c=c, rescale=0)
    g64 = g.astype(np.float64)
    g0 = g64.mean(0)
    radius = c * np.linalg.norm(g0)
    delta = d - g0
    # the ball constraint is tight: |d - g0| = c |g0|
    np.testing.assert_allclose(np.linalg.norm(delta), radius, rtol=1e-3, err_msg=f"{kind} {spread}")
    # delta is along g_w with w = (v - 1/T) / sum on the simplex, and the dual optimality condition holds:
    # every task in the support of w attains min_i g_i . d (the worst-case improvement).
    w = v - 1.0 / t
    assert np.all(w >= -1e-6 * np.abs(w).max()), (kind, spread, w)
    w = np.maximum(w, 0) / np.maximum(w, 0).sum()
    # (tasks without a gradient have no say in the direction: they are left out of the dual)
    nz = np.linalg.norm(g64, axis=1) > 0
    dots = g64 @ d / (unit_scale(g64).max() * np.linalg.norm(d))
    support = w > 1e-3
    assert np.all(dots[support] - dots[nz].min() <= 5e-4), (kind, spread, dots, w)


@pytest.mark.parametrize("t", TS)
def test_imtl_g_equal_projections_and_zero_rows(t):
  for _, kind, spread in cases((t,)):
    g = family(t, kind, spread)
    d, a, _ = run("imtl_g", g)
    g64 = g.astype(np.float64)
    nz = np.linalg.norm(g64, axis=1) > 0
    assert abs(a.sum() - 1) < 1e-4 and np.all(a[~nz] == 0)
    assert np.linalg.norm(d) > 0
    proj = (g64[nz] @ d) / np.linalg.norm(g64[nz], axis=1)
    if nz.sum() > 1:
      assert np.ptp(proj) <= 5e-3 * np.abs(proj).max(), (kind, spread, proj)
    assert rel(d, imtl_ref(g)) < 2e-2, (kind, spread, rel(d, imtl_ref(g)))


@pytest.mark.parametrize("t", (2, 3, 5))
def test_aligned_mtl_keeps_small_tasks(t):
  for _, kind, spread in cases((t,)):
    if kind != "random":
      continue
    g = family(t, kind, min(spread, 1e3))
    d, w, _ = run("aligned_mtl", g)
    ref = aligned_ref(g)
    assert np.all(w != 0)
    assert rel(d, ref) < 1e-2, (spread, rel(d, ref))


def test_float64_under_x64_is_tight():
  with jax.enable_x64(True):
    for t, kind, spread in [(3, "opposed", 1e4), (5, "parallel", 1e4), (8, "random", 1e4)]:
      g = family(t, kind, spread).astype(np.float64)
      d, _, met = run("mgda", g, np.float64)
      assert np.linalg.norm(d - mgda_ref(g)) <= 1e-9 * np.linalg.norm(g, axis=1).min()
      d, _, _ = run("upgrad", g, np.float64)
      assert rel(d, upgrad_ref(g)[0]) < 1e-9
      d, a, _ = run("nash_mtl", g, np.float64)
      np.testing.assert_allclose((g @ g.T @ a) * a, 1.0, atol=1e-9)
      np.testing.assert_allclose(d @ d, t, rtol=1e-9)
