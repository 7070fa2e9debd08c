"""Controllability: preference -> performance rank correlation, performance vs budget, Pareto plots.

Controllability (Raychaudhuri et al. CVPR 2022, Aich et al. ICCV 2023): at a fixed budget, sweep task
preference vectors, run the search for each, and measure per task the Spearman rank correlation between
the task's preference weight and its performance across the sweep; report the mean over tasks.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from mtl.control.search import Measurement, normalize_preference, search


def rank_correlation(preferences: np.ndarray, performances: np.ndarray,
                     higher_is_better: Sequence[bool] | None = None) -> dict:
  """Spearman rho per task between preference and (sign-adjusted) performance across the sweep.

  Args:
    preferences: [P, T] preference weights of the P runs.
    performances: [P, T] the chosen configs' task metrics.
    higher_is_better: per task; lower-is-better metrics are negated first.
  Returns: {'per_task': [T] rho (nan where a column is constant), 'mean': nanmean of them (nan if all nan)}.
  """
  pr, pf = np.asarray(preferences, np.float64), np.asarray(performances, np.float64)
  if pr.ndim != 2 or pr.shape != pf.shape or pr.shape[0] < 2:
    raise ValueError(f"preferences and performances must both be [P >= 2, T], got {pr.shape}, {pf.shape}")
  if higher_is_better is not None:
    if len(higher_is_better) != pr.shape[1]:
      raise ValueError(f"higher_is_better has {len(higher_is_better)} entries for {pr.shape[1]} tasks")
    pf = pf * np.where(np.asarray(higher_is_better, bool), 1.0, -1.0)
  rhos = []
  for t in range(pr.shape[1]):
    if np.ptp(pr[:, t]) == 0 or np.ptp(pf[:, t]) == 0:
      rhos.append(float("nan"))
    else:
      rhos.append(float(stats.spearmanr(pr[:, t], pf[:, t]).statistic))
  finite = [r for r in rhos if np.isfinite(r)]
  return {"per_task": rhos, "mean": float(np.mean(finite)) if finite else float("nan")}


def preference_sweep(num_tasks: int, num_points: int = 5) -> np.ndarray:
  """[P, T] preference vectors: for 2 tasks a line (a, 1-a), a in linspace(0.1, 0.9); for T > 2 each task
  in turn dominant at levels linspace(0.4, 0.8, num_points // T or 1) with the rest shared equally."""
  if num_tasks < 1 or num_points < 2:
    raise ValueError(f"need num_tasks >= 1 and num_points >= 2, got {num_tasks}, {num_points}")
  if num_tasks == 1:
    return np.ones((1, 1))
  if num_tasks == 2:
    a = np.linspace(0.1, 0.9, num_points)
    return np.stack([a, 1 - a], axis=1)
  rows = []
  for t in range(num_tasks):
    for lvl in np.linspace(0.4, 0.8, max(num_points // num_tasks, 1)):
      r = np.full(num_tasks, (1 - lvl) / (num_tasks - 1))
      r[t] = lvl
      rows.append(r)
  return np.array(rows)


def controllability_report(table: Sequence[Measurement], tasks: Sequence[str], budgets: Sequence[float],
                           preferences: np.ndarray, higher_is_better: Mapping[str, bool] | None = None
                           ) -> dict:
  """For each budget: search every preference, then the rank correlation over the sweep.

  Returns a JSON-able dict: {'tasks', 'budgets': [{'budget', 'rank_correlation', 'runs': [
  {'preference', 'config', 'macs', 'metrics', 'overall', 'weighted'}]}]} (budgets below the cheapest
  measured config are reported with 'error').
  """
  hib = {t: True for t in tasks}
  hib.update(higher_is_better or {})
  out = {"tasks": list(tasks), "budgets": []}
  for b in budgets:
    entry = {"budget": float(b), "runs": []}
    try:
      results = [search(b, pref, table, tasks, hib) for pref in preferences]
    except ValueError as e:
      entry["error"] = str(e)
      out["budgets"].append(entry)
      continue
    for pref, r in zip(preferences, results):
      entry["runs"].append({"preference": list(normalize_preference(pref, tasks).values()), **r.to_json()})
    perf = np.array([[r.metrics[t] for t in tasks] for r in results])
    entry["rank_correlation"] = (rank_correlation(np.asarray(preferences), perf, [hib[t] for t in tasks])
                                 if len(results) >= 2 else None)
    out["budgets"].append(entry)
  return out


def pareto_front(points: np.ndarray, maximize: Sequence[bool] | None = None) -> np.ndarray:
  """Indices of the non-dominated rows of `points` [N, K], sorted by the first objective."""
  pts = np.asarray(points, np.float64)
  if pts.ndim != 2 or pts.shape[0] == 0:
    raise ValueError(f"points must be [N >= 1, K], got shape {pts.shape}")
  sign = np.ones(pts.shape[1]) if maximize is None else np.where(np.asarray(maximize, bool), 1.0, -1.0)
  q = pts * sign
  keep = [i for i in range(len(q))
          if not np.any(np.all(q >= q[i], axis=1) & np.any(q > q[i], axis=1))]
  return np.array(sorted(keep, key=lambda i: pts[i, 0]), dtype=int)


def _save(fig, path: str) -> str:
  """Writes `fig` to the PNG `path` (creating its folder), closes it, returns `path`."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def plot_pareto(table: Sequence[Measurement], tasks: tuple[str, str], path: str,
                chosen: Sequence[Mapping] | None = None, higher_is_better: Mapping[str, bool] | None = None,
                title: str = "") -> str:
  """PNG: every measured config in the (task a, task b) metric plane, colored by MACs, its Pareto front,
  and the `chosen` runs (dicts with 'metrics' and 'preference') marked. Returns `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  a, b = tasks
  hib = {a: True, b: True}
  hib.update(higher_is_better or {})
  pts = np.array([[m.metrics[a], m.metrics[b]] for m in table], np.float64)
  macs = np.array([m.macs for m in table], np.float64)
  front = pareto_front(pts, (hib[a], hib[b]))
  fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
  sc = ax.scatter(pts[:, 0], pts[:, 1], c=macs, cmap="viridis", s=14, label="sampled configs")
  fig.colorbar(sc, ax=ax, label="MACs / example")
  ax.plot(pts[front, 0], pts[front, 1], "k--", lw=1, label="Pareto front")
  if chosen:
    cp = np.array([[c["metrics"][a], c["metrics"][b]] for c in chosen])
    ax.plot(cp[:, 0], cp[:, 1], "r-o", ms=5, lw=1, label="search (preference sweep)")
    for c, (x, y) in zip(chosen, cp):
      ax.annotate(f"{c['preference'][0]:.1f}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
  ax.set_xlabel(a)
  ax.set_ylabel(b)
  ax.set_title(title or f"{a} vs {b}")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_budget_curves(report: Mapping, path: str, preference_index: int = 0) -> str:
  """PNG: each task's metric of the searched config vs budget (one preference of the report's sweep)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  entries = [e for e in report["budgets"] if e.get("runs")]
  if not entries:
    raise ValueError("report has no budget with a feasible configuration")
  fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
  for t in report["tasks"]:
    ax.plot([e["budget"] for e in entries], [e["runs"][preference_index]["metrics"][t] for e in entries],
            "-o", ms=4, label=t)
  ax.set_xlabel("budget (MACs / example)")
  ax.set_ylabel("validation metric")
  pref = ", ".join(f"{v:.2f}" for v in entries[0]["runs"][preference_index]["preference"])
  ax.set_title(f"performance vs budget (preference {pref})", fontsize=9)
  ax.legend(fontsize=7)
  return _save(fig, path)
