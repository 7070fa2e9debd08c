r"""Relative error of the combined update of the Gramian methods against float64 references, on badly scaled
gradients (float32 run, as in training), optionally for an earlier copy of mtl/optim in the same run.

  python -m experiments.check_optim_exactness --json docs/mtl_optim_exactness.json \
      [--baseline_pkg /tmp/old/mtl_optim_old]

Cases: T tasks in 16-D with norms log-spaced over `spread` (1e1 .. 1e3), a near-opposed pair (cos ~ -0.999), and a
zero row. References (float64, scipy/numpy): MGDA by support enumeration, UPGrad by scipy nnls, Nash-MTL by
scipy root on G G^T a = 1/a, CAGrad by a simplex grid polished by SLSQP (T = 3), IMTL-G by the paper's closed form on
the non-zero rows, Aligned-MTL by numpy eigh. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from experiments.optim_packages import optim_packages


def _grads(t, spread, kind, seed=0):
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(t, 16))
  if kind == "opposed":
    g[1] = -g[0] + 0.045 * np.linalg.norm(g[0]) * rng.normal(size=16) / 4.0
  g /= np.linalg.norm(g, axis=1, keepdims=True)
  g *= np.logspace(0, np.log10(spread), t)[:, None]
  if kind == "zero":
    g[-1] = 0.0
  return g.astype(np.float32)


def _mgda(g):
  t = len(g)
  s = np.linalg.norm(g, axis=1)
  c = (g / s[:, None]) @ (g / s[:, None]).T
  best, best_w = np.inf, None
  for k in range(1, t + 1):
    for sup in map(list, itertools.combinations(range(t), k)):
      kkt = np.zeros((k + 1, k + 1))
      kkt[:k, :k], kkt[:k, k], kkt[k, :k] = c[np.ix_(sup, sup)], 1 / s[sup], 1 / s[sup]
      y = np.linalg.lstsq(kkt, np.r_[np.zeros(k), 1.0], rcond=1e-14)[0][:k]
      if np.all(y >= 0):
        w = np.zeros(t)
        w[sup] = y / s[sup]
        if w @ g @ g.T @ w < best:
          best, best_w = w @ g @ g.T @ w, w
  return best_w @ g


def _upgrad(g):
  t = len(g)
  return np.mean([np.eye(t)[i] + optimize.nnls(g.T, -g[i], maxiter=10_000)[0] for i in range(t)], 0) @ g


def _nash(g):
  m = g @ g.T
  sol = optimize.root(lambda a: m @ a - 1 / a, 1 / np.sqrt(np.diag(m)), tol=1e-15)
  return sol.x @ g


def _cagrad(g, c=0.4):
  """T = 3: the dual on a 1/400 grid of the simplex, polished by SLSQP from the best grid point (objective
  normalised by |g0|^2; SLSQP from the usual starts stalls when the norms are 1e3 apart)."""
  t = len(g)
  m = g @ g.T
  b = np.full(t, 1 / t)
  scale = b @ m @ b
  r = c * np.sqrt(scale)
  obj = lambda x: (x @ m @ b + r * np.sqrt(max(x @ m @ x, 0.0))) / scale  # noqa: E731
  n = 400
  grid = [np.array([i, j, n - i - j]) / n for i in range(n + 1) for j in range(n + 1 - i)]
  x0 = min(grid, key=obj)
  res = optimize.minimize(obj, x0, bounds=[(0, 1)] * t, method="SLSQP",
                          constraints=({"type": "eq", "fun": lambda x: x.sum() - 1},),
                          options={"ftol": 1e-16, "maxiter": 5000})
  x = res.x if res.fun <= obj(x0) else x0
  gw = x @ g
  return (b @ g + r * gw / np.linalg.norm(gw)) / (1 + c ** 2)


def _imtl(g):
  h = g[np.linalg.norm(g, axis=1) > 0]
  u = h / np.linalg.norm(h, axis=1, keepdims=True)
  rest = (h[0] @ (u[:1] - u[1:]).T) @ np.linalg.inv((h[:1] - h[1:]) @ (u[:1] - u[1:]).T)
  return np.r_[1 - rest.sum(), rest] @ h


def _aligned(g):
  lam, v = np.linalg.eigh(g @ g.T)
  keep = lam > lam.max() * 1e-13
  return (np.sqrt(lam[keep].min()) * (v[:, keep] / np.sqrt(lam[keep])) @ v[:, keep].T).sum(0) @ g


CASES = [("mgda", 5, s, "random", _mgda) for s in (1e1, 1e2, 1e3)] + [
    ("mgda", 3, 1e2, "opposed", _mgda), ("cagrad", 3, 1e3, "random", _cagrad), ("cagrad", 3, 1e2, "opposed", _cagrad),
    ("upgrad", 3, 1.0, "opposed", _upgrad), ("upgrad", 5, 1e2, "opposed", _upgrad),
    ("nash_mtl", 2, 1e2, "random", _nash), ("nash_mtl", 3, 1e3, "random", _nash),
    ("imtl_g", 3, 1e1, "zero", _imtl), ("imtl_g", 4, 1e2, "random", _imtl),
    ("aligned_mtl", 3, 1e3, "random", _aligned), ("aligned_mtl", 4, 1e2, "random", _aligned)]


def _run(pkg, name, g, kwargs):
  t = g.shape[0]
  m = pkg.get_method(name, t, **kwargs)
  out, _, _ = jax.jit(m.combine_stacked)({"x": jnp.asarray(g)}, jnp.ones(t), m.init({"x": jnp.zeros(16)}),
                                         jnp.int32(0))
  return np.asarray(out["x"], np.float64)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--baseline_pkg", default=None)
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  pkgs = optim_packages(args.baseline_pkg)
  rows = []
  for name, t, spread, kind, ref_fn in CASES:
    g = _grads(t, spread, kind)
    ref = ref_fn(g.astype(np.float64))
    row = {"method": name, "tasks": t, "spread": spread, "case": kind}
    for tag, pkg in pkgs.items():
      kwargs = {"normalize": False} if (tag == "old" and name == "nash_mtl") else {}
      d = _run(pkg, name, g, kwargs)
      row[f"{tag}_rel_err"] = float(np.linalg.norm(d - ref) / np.linalg.norm(ref))
      if name in ("mgda", "upgrad"):
        g64 = g.astype(np.float64)
        lhs = g64 @ d - (d @ d if name == "mgda" else 0.0)
        row[f"{tag}_worst_conflict"] = float(np.min(lhs / (np.linalg.norm(g64, axis=1) * np.linalg.norm(d))))
    rows.append(row)
    print(row, flush=True)
  tags = list(pkgs)
  print("| method | T | norm spread | case | " + " | ".join(f"{t} rel. error" for t in tags) + " |")
  for r in rows:
    print(f"| {r['method']} | {r['tasks']} | {r['spread']:g} | {r['case']} | "
          + " | ".join(f"{r[f'{t}_rel_err']:.1e}" for t in tags) + " |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"command": "python -m experiments.check_optim_exactness " + " ".join(
          argv if argv is not None else sys.argv[1:]), "rows": rows}, f, indent=2)
  return rows


if __name__ == "__main__":
  main()
