"""Small jit-able solvers on the task Gramian (T x T, T small): simplex QPs, non-negative QPs, and the
power fixed point M w = w^(-1/alpha) of Nash-MTL / FairGrad. Fixed iteration counts, no host callbacks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg


def project_simplex(v: jnp.ndarray) -> jnp.ndarray:
  """Euclidean projection of v [T] onto {w >= 0, sum w = 1} (Duchi et al. 2008)."""
  n = v.shape[-1]
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  idx = jnp.arange(1, n + 1, dtype=v.dtype)
  rho = jnp.sum((u - css / idx) > 0)
  theta = css[rho - 1] / rho.astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def _fista_simplex(grad_fn, lipschitz, x0, iters):
  """Accelerated projected gradient on the simplex with step 1/lipschitz."""
  step = 1.0 / jnp.maximum(lipschitz, 1e-30)

  def body(_, carry):
    x, y, t = carry
    x_new = project_simplex(y - step * grad_fn(y))
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    y_new = x_new + ((t - 1.0) / t_new) * (x_new - x)
    return x_new, y_new, t_new

  x, _, _ = jax.lax.fori_loop(0, iters, body, (x0, x0, jnp.ones((), x0.dtype)))
  return x


def min_norm_simplex(gram: jnp.ndarray, iters: int = 500) -> jnp.ndarray:
  """argmin_{w in simplex} w^T M w: the minimum-norm point of the convex hull of the gradients (MGDA)."""
  t = gram.shape[0]
  lip = 2.0 * jnp.linalg.eigvalsh(gram)[-1]
  x0 = jnp.full((t,), 1.0 / t, gram.dtype)
  return _fista_simplex(lambda w: 2.0 * gram @ w, lip, x0, iters)


def cagrad_inner(gram: jnp.ndarray, c: jnp.ndarray, iters: int = 500) -> jnp.ndarray:
  """argmin_{w in simplex} w^T M b + c sqrt(w^T M w), b = 1/T (CAGrad's dual problem, Liu et al. 2021).

  The sqrt term's curvature is at most c |M| / sqrt(min_simplex w^T M w), which sets the step size.
  """
  t = gram.shape[0]
  b = jnp.full((t,), 1.0 / t, gram.dtype)
  eps = 1e-8 * (jnp.trace(gram) / t + 1e-30)
  w_min = min_norm_simplex(gram, iters)
  q_min = jnp.maximum(w_min @ gram @ w_min, 0.0) + eps
  lam_max = jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 0.0)
  lip = jnp.maximum(c * lam_max / jnp.sqrt(q_min), 1e-6 * jnp.sqrt(lam_max) + 1e-30)  # floor: c = 0 is linear
  gb = gram @ b

  def grad(w):
    gw = gram @ w
    return gb + c * gw / jnp.sqrt(jnp.maximum(w @ gw, 0.0) + eps)

  return _fista_simplex(grad, lip, b, iters)


def nonneg_qp_rows(gram: jnp.ndarray, lower: jnp.ndarray, sweeps: int = 100) -> jnp.ndarray:
  """For each row i: argmin_{u >= lower[i]} u^T M u, by projected Gauss-Seidel (coordinate descent).

  With lower = I this is the projection of each g_i onto the dual cone {x: G x >= 0}: x_i = G^T u_i (UPGrad).
  Returns U [R, T].
  """
  t = gram.shape[0]
  diag = jnp.diag(gram)
  safe = jnp.where(diag > 0, diag, 1.0)

  def coord(j, u):
    col = u @ gram[:, j]
    new = jnp.maximum(lower[:, j], u[:, j] - col / safe[j])
    new = jnp.where(diag[j] > 0, new, u[:, j])
    return u.at[:, j].set(new)

  def sweep(_, u):
    return jax.lax.fori_loop(0, t, coord, u)

  return jax.lax.fori_loop(0, sweeps, sweep, lower.astype(gram.dtype))


def power_fixed_point(gram: jnp.ndarray, alpha: float = 1.0, iters: int = 50, ridge: float = 1e-6) -> jnp.ndarray:
  """w > 0 with (M w)_i = w_i^(-1/alpha) (alpha = 1: Nash-MTL's G G^T a = 1/a; else FairGrad).

  It is the minimiser of the strictly convex F(w) = w^T M w / 2 - sum_i h(w_i), h' = w^(-1/alpha), found by
  damped Newton steps that stay inside w > 0. A relative ridge keeps F bounded when M is singular.
  """
  t = gram.shape[0]
  p = 1.0 / alpha
  m = gram + ridge * (jnp.trace(gram) / t + 1e-30) * jnp.eye(t, dtype=gram.dtype)

  def h(w):
    if p == 1.0:
      return jnp.log(w)
    return w ** (1.0 - p) / (1.0 - p)

  def objective(w):
    return 0.5 * w @ m @ w - jnp.sum(h(w))

  def body(_, w):
    g = m @ w - w ** (-p)
    hess = m + jnp.diag(p * w ** (-p - 1.0))  # symmetric positive definite
    d = -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(hess), True), g)
    ratio = jnp.where(d < 0, -w / jnp.where(d < 0, d, -1.0), jnp.inf)
    s_max = jnp.minimum(1.0, 0.95 * jnp.min(ratio))
    scales = s_max * 0.5 ** jnp.arange(12, dtype=w.dtype)
    cands = w[None, :] + scales[:, None] * d[None, :]
    f0 = objective(w)
    fs = jax.vmap(objective)(cands)
    ok = fs <= f0 + 1e-4 * scales * (g @ d)
    k = jnp.argmax(ok)
    return jnp.where(jnp.any(ok), cands[k], w)

  w0 = jnp.maximum(jnp.diag(m), 1e-30) ** (-1.0 / (1.0 + p))
  return jax.lax.fori_loop(0, iters, body, w0)
