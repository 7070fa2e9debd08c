"""Exact, certified solvers on the task Gramian M = G G^T (T x T, T small), jit-able, no host callbacks.

Every solver works on the diagonally rescaled Gramian C = S^-1 M S^-1 (S = diag |g_i|, so C is the cosine
matrix with a unit diagonal): the problems below are rewritten in C, so a task whose gradient is 1e-4 of the
largest keeps full relative precision even in float32 (a rescaling, not a ridge). Rows with |g_i| = 0 (a
batch without that task's labels) are detected (`zero_rows`) and handled per problem.

  simplex_qp:            min_w 0.5 w^T H w + q^T w, w >= 0, a^T w = 1  (primal active set, exact)
  nonneg_qp:             min_v 0.5 v^T H v + q^T v, v >= 0             (primal active set, exact)
  min_norm_simplex:      MGDA, argmin_{w in simplex} |G^T w|^2
  project_dual_cone:     UPGrad / DualProj, argmin_{u >= p} u^T M u for each preference row p
  cagrad_weights:        CAGrad, min_{w in simplex} w^T M b + R |G^T w| via a monotone 1-D root over
                         exact simplex QPs
  bargaining:            Nash-MTL / FairGrad, M a = a^(-1/alpha), Newton until the residual certificate holds
  cosine_solve:          IMTL-G / ConFIG, C^+ b: a Cholesky solve when C is numerically full rank, else eigh

Active-set solvers terminate finitely (each iteration adds or drops one index); they run in a
`lax.while_loop` capped at `max_iter` and return a `SolveInfo` (iterations, whether the cap was hit, and the
KKT residual of the returned point), which the methods report as metrics.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SolveInfo(NamedTuple):
  """iters: iterations taken; capped: 1.0 if the iteration cap was hit before the certificate; residual: the
  certificate's value (scale-free KKT / fixed-point residual) at the returned point."""
  iters: jnp.ndarray
  capped: jnp.ndarray
  residual: jnp.ndarray

  def metrics(self, prefix: str = "solver") -> dict[str, jnp.ndarray]:
    return {f"{prefix}/iters": jnp.max(self.iters).astype(jnp.float32),
            f"{prefix}/capped": jnp.max(self.capped).astype(jnp.float32),
            f"{prefix}/residual": jnp.max(self.residual).astype(jnp.float32)}


def eps(dtype) -> float:
  return float(jnp.finfo(dtype).eps)


def zero_rows(gram: jnp.ndarray) -> jnp.ndarray:
  """bool [T]: tasks whose gradient is zero (to working precision, relative to the largest gradient)."""
  d = jnp.maximum(jnp.diag(gram), 0.0)
  return d <= jnp.max(d) * eps(gram.dtype) ** 2 + jnp.finfo(gram.dtype).tiny


def rescale(gram: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """(C, s, zero): C = M / (s s^T) with unit diagonal on non-zero rows and zero rows/columns elsewhere,
  s = |g_i| (1 where the row is zero, so divisions stay finite), zero = zero_rows(M)."""
  zero = zero_rows(gram)
  s = jnp.where(zero, 1.0, jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0)))
  c = gram / (s[:, None] * s[None, :])
  keep = ~zero
  c = jnp.where(keep[:, None] & keep[None, :], c, 0.0)
  c = jnp.where(jnp.eye(gram.shape[0], dtype=bool) & keep, 1.0, c)
  return c, s, zero


def project_simplex(v: jnp.ndarray) -> jnp.ndarray:
  """Euclidean projection of v [T] onto {w >= 0, sum w = 1} (Duchi et al. 2008)."""
  n = v.shape[-1]
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  idx = jnp.arange(1, n + 1, dtype=v.dtype)
  rho = jnp.sum((u - css / idx) > 0)
  theta = css[rho - 1] / rho.astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def _cholesky(a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(L, pivots): A = L L^T for a symmetric positive definite A [T, T], written out over the static T (no LAPACK
  call: on CPU a custom call costs more than the whole T x T solve). pivots [T] are the Schur complements
  before the square root; one at or below 0 (A singular to working precision) is floored at `tiny`."""
  t = a.shape[0]
  cols, piv = [], []
  for j in range(t):
    prev = jnp.stack(cols, axis=1) if cols else jnp.zeros((t, 0), a.dtype)
    col = a[:, j] - prev @ prev[j]
    piv.append(col[j])
    d = jnp.sqrt(jnp.maximum(col[j], jnp.finfo(a.dtype).tiny))
    cols.append(jnp.where(jnp.arange(t) >= j, col / d, 0.0))
  return jnp.stack(cols, axis=1), jnp.stack(piv)


def _forward(low: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """y = L^-1 b (L lower triangular [T, T], b [T] or [T, K])."""
  ys = []
  for i in range(low.shape[0]):
    acc = b[i] - sum(low[i, k] * ys[k] for k in range(i)) if i else b[i]
    ys.append(acc / low[i, i])
  return jnp.stack(ys, axis=0)


def _backward(low: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  """x = L^-T y."""
  t = low.shape[0]
  xs = [None] * t
  for i in reversed(range(t)):
    acc = y[i] - sum(low[k, i] * xs[k] for k in range(i + 1, t)) if i < t - 1 else y[i]
    xs[i] = acc / low[i, i]
  return jnp.stack(xs, axis=0)


def spd_solve(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """x = A^-1 b for a symmetric positive definite A [T, T] (b [T] or [T, K]) by a Cholesky factorisation written
  out over the static T (no LAPACK call: on CPU a custom call costs more than the whole T x T solve)."""
  low, _ = _cholesky(a)
  return _backward(low, _forward(low, b))


def cosine_solve(c: jnp.ndarray, b: jnp.ndarray, keep: jnp.ndarray) -> jnp.ndarray:
  """beta = C^+ b on the rows in `keep` (0 elsewhere), for the unit-diagonal cosine matrix C [T, T] of `rescale`
  (b [T]; entries off `keep` are ignored).

  Full-rank path: a Cholesky solve (no LAPACK call) with one step of iterative refinement. It is taken when every
  pivot and 1 / trace(C^-1) exceed 10 T^2 eps, both read off the same factorisation (trace(C^-1) = |L^-1|_F^2):
  since lambda_min >= 1 / trace(C^-1) and lambda_max <= T, no eigenvalue is below the pseudo-inverse's cut-off
  (10 T eps lambda_max), so the solve is C^+ b. (The pivot test catches a factorisation whose pivot was floored,
  where L and hence the trace are meaningless.) Otherwise (parallel or linearly dependent gradients, T > rank)
  the Hermitian pseudo-inverse (eigh) runs instead, in a `lax.cond`, so the full-rank step never pays for it."""
  t = c.shape[0]
  cut = 10.0 * t * t * eps(c.dtype)
  c_keep = jnp.where(keep[:, None] & keep[None, :], c, 0.0)
  k = c_keep + jnp.diag(jnp.where(keep, 0.0, 1.0).astype(c.dtype))
  rhs = jnp.where(keep, b, 0.0).astype(c.dtype)
  low, piv = _cholesky(k)
  x = _backward(low, _forward(low, rhs))
  x = x + _backward(low, _forward(low, rhs - k @ x))
  trace_inv = jnp.sum(_forward(low, jnp.eye(t, dtype=c.dtype)) ** 2)  # = trace(K^-1), K = C on keep, I off it
  # a floored pivot (singular to working precision) makes L, hence trace_inv, meaningless: test it first
  ok = jnp.all(piv > cut) & jnp.isfinite(trace_inv) & ((trace_inv - jnp.sum(~keep)) * cut < 1.0)
  ok = ok & jnp.all(jnp.isfinite(x))
  pinv = lambda: jnp.linalg.pinv(c_keep, hermitian=True) @ rhs
  return jnp.where(keep, jax.lax.cond(ok, lambda: x, pinv), 0.0)


def _subproblem(h, q, free, a, refine: int = 2):
  """Minimiser of 0.5 x^T H x + q^T x over {x_j = 0 off `free`, a^T x = 1 if a is given}: (x, nu).

  H is the unit-diagonal rescaled Gramian. The free block is factorised with a ridge of 10 T eps on its diagonal
  (relative to 1, i.e. to each task's own squared norm), which keeps it positive definite when gradients are
  parallel or T > rank; `refine` steps of iterative refinement against the unridged system then remove the
  ridge's effect wherever the block is non-singular."""
  t = h.shape[0]
  both = free[:, None] & free[None, :]
  k0 = jnp.where(both, h, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0).astype(h.dtype))
  ridge = 10.0 * t * eps(h.dtype) * jnp.maximum(jnp.max(jnp.diag(h)), 1.0)
  k = k0 + jnp.diag(jnp.where(free, ridge, 0.0).astype(h.dtype))
  rhs = jnp.where(free, -q, 0.0)
  if a is None:
    x = spd_solve(k, rhs)
    for _ in range(refine):
      x = x + spd_solve(k, rhs - k0 @ x)
    return jnp.where(free, x, 0.0), jnp.zeros((), h.dtype)
  af = jnp.where(free, a, 0.0)

  def bordered(r1, r2):
    # [K a; a^T 0] [x; nu] = [r1; r2] by the Schur complement on a
    sol = spd_solve(k, jnp.stack([r1, af], axis=1))
    nu = (af @ sol[:, 0] - r2) / jnp.maximum(af @ sol[:, 1], jnp.finfo(h.dtype).tiny)
    return sol[:, 0] - nu * sol[:, 1], nu

  x, nu = bordered(rhs, jnp.ones((), h.dtype))
  for _ in range(refine):
    dx, dnu = bordered(rhs - k0 @ x - nu * af, 1.0 - af @ x)
    x, nu = x + dx, nu + dnu
  return jnp.where(free, x, 0.0), nu


def _active_set(h, q, a, x0, free0, max_iter, tol, allowed=None):
  """Primal active-set method for min 0.5 x^T H x + q^T x, x >= 0 (and a^T x = 1), H PSD, from a feasible
  x0 whose support is `free0`; indices off `allowed` stay at 0. Returns (x, SolveInfo) with the scale-free KKT
  residual."""
  t = h.shape[0]
  allowed = jnp.ones((t,), bool) if allowed is None else allowed
  scale = jnp.maximum(jnp.max(jnp.abs(jnp.diag(h))), jnp.max(jnp.abs(q)))
  scale = jnp.where(scale > 0, scale, 1.0)

  def multipliers(x, nu):
    return h @ x + q + (nu * a if a is not None else 0.0)

  def cond(c):
    _, _, it, done = c
    return (~done) & (it < max_iter)

  def body(c):
    x, free, it, _ = c
    xs, nu = _subproblem(h, q, free, a)
    feasible = jnp.all(jnp.where(free, xs >= 0, True))
    # feasible subproblem solution: take it, then free the most violated multiplier (or stop)
    lam = multipliers(xs, nu)
    viol = jnp.where(free | ~allowed, jnp.inf, lam)
    j = jnp.argmin(viol)
    optimal = viol[j] >= -tol * scale
    free_a = jnp.where(optimal, free, free.at[j].set(True))
    # infeasible: step towards it until the first free coordinate hits 0, which leaves the free set
    p = xs - x
    ratio = jnp.where(free & (p < 0), -x / jnp.where(p < 0, p, -1.0), jnp.inf)
    k = jnp.argmin(ratio)
    alpha = jnp.clip(ratio[k], 0.0, 1.0)
    x_b = x + alpha * p
    hit = free & ((x_b <= 0) | (jnp.arange(t) == k))
    x_b = jnp.where(hit, 0.0, x_b)
    free_b = free & ~hit
    x_new = jnp.where(feasible, jnp.where(free, xs, 0.0), x_b)
    free_new = jnp.where(feasible, free_a, free_b)
    return x_new, free_new, it + 1, feasible & optimal

  x, free, it, done = jax.lax.while_loop(cond, body, (x0, free0, jnp.zeros((), jnp.int32), jnp.zeros((), bool)))
  # certificate: stationarity with the best equality multiplier, multiplier signs, complementarity
  g = h @ x + q
  if a is not None:
    sup = x > 0
    nu = -jnp.sum(jnp.where(sup, g * a, 0.0)) / jnp.maximum(jnp.sum(jnp.where(sup, a * a, 0.0)), 1e-30)
    g = g + nu * a
  res = jnp.max(jnp.where(x > 0, jnp.abs(g), jnp.where(allowed, jnp.maximum(-g, 0.0), 0.0))) / scale
  return x, SolveInfo(it, (~done).astype(h.dtype), res)


def _default_iter(t: int) -> int:
  return 4 * t + 10


def _tol(dtype) -> float:
  return 100.0 * eps(dtype)


def simplex_qp(h: jnp.ndarray, q: jnp.ndarray | None = None, a: jnp.ndarray | None = None,
               max_iter: int | None = None, allowed: jnp.ndarray | None = None) -> tuple[jnp.ndarray, SolveInfo]:
  """argmin 0.5 w^T H w + q^T w over {w >= 0, a^T w = 1, w_j = 0 off `allowed`} (a > 0; default 1: the
  simplex), exactly."""
  t = h.shape[0]
  q = jnp.zeros((t,), h.dtype) if q is None else q
  a = jnp.ones((t,), h.dtype) if a is None else a
  # start at the best vertex e_k / a_k
  vals = 0.5 * jnp.diag(h) / a ** 2 + q / a
  if allowed is not None:
    vals = jnp.where(allowed, vals, jnp.inf)
  k = jnp.argmin(vals)
  x0 = jnp.zeros((t,), h.dtype).at[k].set(1.0 / a[k])
  free0 = jnp.arange(t) == k
  return _active_set(h, q, a, x0, free0, max_iter or _default_iter(t), _tol(h.dtype), allowed)


def nonneg_qp(h: jnp.ndarray, q: jnp.ndarray, max_iter: int | None = None) -> tuple[jnp.ndarray, SolveInfo]:
  """argmin_{v >= 0} 0.5 v^T H v + q^T v (H PSD), exactly."""
  t = h.shape[0]
  return _active_set(h, q, None, jnp.zeros((t,), h.dtype), jnp.zeros((t,), bool), max_iter or _default_iter(t),
                     _tol(h.dtype))


def min_norm_simplex(gram: jnp.ndarray, max_iter: int | None = None, exclude: jnp.ndarray | None = None
                     ) -> tuple[jnp.ndarray, SolveInfo]:
  """MGDA: w = argmin_{w in simplex} w^T M w (the minimum-norm point of the convex hull of the gradients).

  Solved in the rescaled variables y_i = w_i s_i / s_min on C (unit diagonal) with the constraint
  sum_i (s_min / s_i) y_i = 1. With a zero gradient the minimum is 0, at the zero rows (uniform over them).
  `exclude` (bool [T]) restricts the hull to the other rows."""
  c, s, zero = rescale(gram)
  if exclude is not None:
    zero = zero & ~exclude
  smin = jnp.min(jnp.where(zero, jnp.inf, s))
  smin = jnp.where(jnp.isfinite(smin), smin, 1.0)
  a = smin / s
  y, info = simplex_qp(c, None, a, max_iter, None if exclude is None else ~exclude)
  w = y * a
  w = w / jnp.sum(w)
  nz = jnp.sum(zero)
  w = jnp.where(nz > 0, zero.astype(gram.dtype) / jnp.maximum(nz, 1), w)
  return w, info


def project_dual_cone(gram: jnp.ndarray, prefs: jnp.ndarray, max_iter: int | None = None
                      ) -> tuple[jnp.ndarray, SolveInfo]:
  """U [R, T] with u_r = argmin_{u >= p_r} u^T M u for each row p_r >= 0 of `prefs` [R, T].

  G^T u_r is the projection of G^T p_r onto the dual cone {x : G x >= 0} (UPGrad with P = I, DualProj with
  p = 1/T). In the rescaled variables y = s * u on C: y = s * p + k z, z = argmin_{z >= 0} 0.5 z^T C z +
  (C (s * p) / k)^T z with k = max(s * p), an NNLS-type QP solved exactly. Zero rows keep u_j = p_j."""
  c, s, zero = rescale(gram)

  def one(p):
    sp = jnp.where(zero, 0.0, s * p)
    k = jnp.max(sp)
    k = jnp.where(k > 0, k, 1.0)
    z, info = nonneg_qp(c, c @ (sp / k), max_iter)
    u = jnp.where(zero, p, (sp + k * z) / s)
    return u, info

  u, info = jax.vmap(one)(prefs.astype(gram.dtype))
  return u, info


def cagrad_weights(gram: jnp.ndarray, c: float, max_iter: int | None = None, root_iter: int = 60
                   ) -> tuple[jnp.ndarray, SolveInfo]:
  """CAGrad (Liu et al. 2021): weights v [T] of d = g0 + R g_w / |g_w| = sum_i v_i g_i, where R = c |g0|,
  g0 = mean gradient and w = argmin_{w in simplex} g_w . g0 + R |g_w| (without the paper's rescaling).

  Exact route: for r > 0, w(r) = argmin_{w in simplex} |g0 + r g_w|^2 (the min-norm point of the shifted hull,
  an exact simplex QP) solves the penalised dual, and |delta(r)| = r |g_w(r)| is non-decreasing in r; the
  optimum is the root of |delta(r)| = R, bracketed by R / max_i |g_i| <= r <= R / |g*| (g* = the MGDA point,
  since |g*| <= |g_w(r)| <= max_i |g_i|), found by safeguarded secant steps (Illinois) in log r. If 0 is
  (numerically) in the hull and |delta| stays below R, the largest bracket point is used (d = g0 + delta)."""
  t = gram.shape[0]
  dt = gram.dtype
  b = jnp.full((t,), 1.0 / t, dt)
  mb = gram @ b
  bmb = jnp.maximum(b @ mb, 0.0)
  radius_raw = c * jnp.sqrt(bmb)
  radius = jnp.where(radius_raw > 0, radius_raw, 1.0)
  zero = zero_rows(gram)  # tasks without a gradient have no say in the direction (they stay in g0)
  w_star, info0 = min_norm_simplex(gram, max_iter, exclude=zero)
  n_star = jnp.sqrt(jnp.maximum(w_star @ gram @ w_star, 0.0))
  norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
  n_max = jnp.max(norms)
  n_min = jnp.min(jnp.where(zero, jnp.inf, norms))
  tiny = eps(dt) * jnp.where(jnp.isfinite(n_min), n_min, 1.0) + jnp.finfo(dt).tiny

  def solve(log_r):
    r = jnp.exp(log_r)
    h = bmb + r * (mb[:, None] + mb[None, :]) + r * r * gram
    w, info = min_norm_simplex(h, max_iter, exclude=zero)
    delta = r * jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
    return w, info, jnp.log(jnp.maximum(delta, jnp.finfo(dt).tiny)) - jnp.log(radius)

  lo = jnp.log(radius / n_max)
  hi = jnp.log(radius / jnp.maximum(n_star, tiny))
  _, _, f_lo = solve(lo)
  w_hi, info_hi, f_hi = solve(hi)
  tol = 10.0 * eps(dt) if dt == jnp.float64 else 1e-5

  def cond(s):
    lo, hi, f_lo, f_hi, it, _, _ = s
    return (it < root_iter) & (jnp.minimum(jnp.abs(f_lo), jnp.abs(f_hi)) > tol) & (hi - lo > tol) & (f_hi > 0)

  def body(s):
    lo, hi, f_lo, f_hi, it, side, _ = s
    x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
    x = jnp.clip(x, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo))
    _, _, fx = solve(x)
    right = fx > 0
    # Illinois: halve the retained end's value when the same side is kept twice in a row
    new_lo, new_f_lo = jnp.where(right, lo, x), jnp.where(right, jnp.where(side == 1, 0.5 * f_lo, f_lo), fx)
    new_hi, new_f_hi = jnp.where(right, x, hi), jnp.where(right, fx, jnp.where(side == -1, 0.5 * f_hi, f_hi))
    return new_lo, new_hi, new_f_lo, new_f_hi, it + 1, jnp.where(right, 1, -1).astype(jnp.int32), fx

  lo, hi, f_lo, f_hi, it, _, _ = jax.lax.while_loop(
      cond, body, (lo, hi, f_lo, f_hi, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), f_hi))
  log_r = jnp.where(f_hi <= 0, hi, jnp.where(jnp.abs(f_lo) < jnp.abs(f_hi), lo, hi))
  w, info, f = solve(log_r)
  v = b + jnp.exp(log_r) * w
  converged = (jnp.abs(f) <= tol) | (f_hi <= 0)
  capped = jnp.maximum(jnp.maximum(info.capped, info0.capped), (~converged).astype(dt))
  v = jnp.where(radius_raw > 0, v, b)
  return v, SolveInfo(it + info.iters, capped, jnp.maximum(info.residual, jnp.where(f_hi <= 0, 0.0, jnp.abs(f))))


def bargaining(gram: jnp.ndarray, alpha: float = 1.0, max_iter: int = 100) -> tuple[jnp.ndarray, SolveInfo]:
  """a > 0 with (M a)_i = a_i^(-1/alpha) on the non-zero rows (alpha = 1: Nash-MTL's G G^T a = 1/a, then
  |G^T a|^2 = T; else FairGrad), a_i = 0 on zero rows (no such a exists there).

  With a = b / s and C the cosine matrix this is C b = c * b^(-p), c_i = s_i^(p - 1), p = 1/alpha: the
  minimiser of the strictly convex F(b) = b^T C b / 2 - sum_i c_i h(b_i), h' = b^(-p), found by damped Newton
  steps that stay in b > 0 and stop when max_i |(C b)_i b_i^p / c_i - 1| <= tol (the certificate). No ridge that
  matters is added (1e-3 eps on C's unit diagonal only keeps F bounded when C is exactly singular)."""
  p = 1.0 / float(alpha)
  cm, s, zero = rescale(gram)
  dt = gram.dtype
  cm = cm + jnp.diag(jnp.where(zero, 0.0, 1e-3 * eps(dt)).astype(dt)) + jnp.diag(zero.astype(dt))
  coef = jnp.where(zero, 1.0, s ** (p - 1.0))
  tol = 1e3 * eps(dt) if dt == jnp.float64 else 2e-3  # float32: rounding floor of (C b) b at cos -0.999

  def h(b):
    if p == 1.0:
      return jnp.log(b)
    return b ** (1.0 - p) / (1.0 - p)

  def objective(b):
    return 0.5 * b @ cm @ b - jnp.sum(coef * h(b))

  def residual(b):
    return jnp.max(jnp.abs((cm @ b) * b ** p / coef - 1.0))

  tight = tol if dt == jnp.float64 else 1e-6

  def cond(c):
    _, it, res, prev = c
    stalled = (res > 0.5 * prev) & (res <= tol)  # at the rounding floor: further steps do not help
    return (it < max_iter) & (res > tight) & ~stalled

  def body(c):
    b, it, res_old, _ = c
    g = cm @ b - coef * b ** (-p)
    hess = cm + jnp.diag(p * coef * b ** (-p - 1.0))
    d = -spd_solve(hess, g)
    ratio = jnp.where(d < 0, -b / jnp.where(d < 0, d, -1.0), jnp.inf)
    s_max = jnp.minimum(1.0, 0.95 * jnp.min(ratio))
    steps = s_max * 0.5 ** jnp.arange(20, dtype=dt)
    cands = b[None, :] + steps[:, None] * d[None, :]
    fs = jax.vmap(objective)(cands)
    ok = fs <= objective(b) + 1e-4 * steps * (g @ d)
    # near the solution F is flat to rounding (float32): fall back to the step that lowers the residual most
    res_c = jax.vmap(residual)(cands)
    k = jnp.where(jnp.any(ok), jnp.argmax(ok), jnp.argmin(res_c))
    return cands[k], it + 1, res_c[k], res_old

  b0 = coef ** (1.0 / (1.0 + p))
  b, it, res, _ = jax.lax.while_loop(cond, body, (b0, jnp.zeros((), jnp.int32), residual(b0),
                                                  jnp.asarray(jnp.inf, dt)))
  a = jnp.where(zero, 0.0, b / s)
  return a, SolveInfo(it, (res > tol).astype(dt), res)
