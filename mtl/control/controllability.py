"""Controllability: preference -> performance rank correlation, performance vs budget, Pareto plots.

Controllability (Raychaudhuri et al. CVPR 2022, Aich et al. ICCV 2023): at a fixed budget, sweep task
preference vectors, run the search for each, and measure per task the Spearman rank correlation between
the task's preference weight and its performance across the sweep; report the mean over tasks.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from mtl.control.search import (Measurement, check_normalization, normalize_preference, relative_performance,
                                search)


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


def preference_sweep(num_tasks: int, num_points: int = 10) -> np.ndarray:
  """[P, T] distinct preference vectors (rows sum to 1), P >= num_points.

  2 tasks: the line (a, 1 - a), a in linspace(0.1, 0.9, num_points). T > 2 tasks: the interior grid of the
  simplex with step 1 / n, every vector k / n with positive integers k summing to n, for the smallest n that
  gives at least num_points vectors (T = 3: n = 6 gives 10 vectors, n = 7 gives 15).
  """
  if num_tasks < 1 or num_points < 2:
    raise ValueError(f"need num_tasks >= 1 and num_points >= 2, got {num_tasks}, {num_points}")
  if num_tasks == 1:
    return np.ones((1, 1))
  if num_tasks == 2:
    a = np.linspace(0.1, 0.9, num_points)
    return np.stack([a, 1 - a], axis=1)
  n = num_tasks
  while math.comb(n - 1, num_tasks - 1) < num_points:
    n += 1
  rows = [np.array(c, np.float64) / n for c in _compositions(n, num_tasks)]
  return np.array(rows)


def _compositions(n: int, parts: int):
  """Every tuple of `parts` positive integers summing to n (lexicographic)."""
  if parts == 1:
    yield (n,)
    return
  for first in range(1, n - parts + 2):
    for rest in _compositions(n - first, parts - 1):
      yield (first,) + rest


def hypervolume_2d(macs: np.ndarray, metric: np.ndarray, higher_is_better: bool = True,
                   reference: tuple[float, float] | None = None) -> float:
  """Area dominated by the (MACs, metric) points (fewer MACs and a better metric dominate), up to `reference`.

  Args:
    macs: [N] cost of each configuration (e.g. as a fraction of full width).
    metric: [N] task metric.
    reference: (MACs, metric) worst corner; default (max MACs, worst metric) of the points. Points not strictly
      better than it in both coordinates add nothing.
  Returns: float, in units of MACs x metric.
  """
  x, y = np.asarray(macs, np.float64), np.asarray(metric, np.float64)
  if x.ndim != 1 or x.shape != y.shape or x.size == 0 or not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError(f"hypervolume_2d needs finite [N >= 1] MACs and metrics of one shape, got {x.shape}, {y.shape}")
  q = y if higher_is_better else -y
  if reference is None:
    rx, rq = float(x.max()), float(q.min())
  else:
    rx, rq = float(reference[0]), float(reference[1]) * (1.0 if higher_is_better else -1.0)
  keep = (x < rx) & (q > rq)
  area, best = 0.0, rq
  for xi, qi in sorted(zip(x[keep], q[keep])):  # sweep by increasing MACs; the front rises in q
    if qi > best:
      area += (rx - xi) * (qi - best)
      best = qi
  return float(area)


def controllability_report(table: Sequence[Measurement], tasks: Sequence[str], budgets: Sequence[float],
                           preferences: np.ndarray, higher_is_better: Mapping[str, bool] | None = None,
                           normalization: str = "reference") -> dict:
  """For each budget: search every preference (`search` with `normalization`), then the rank correlation over
  the sweep.

  Returns a JSON-able dict: {'tasks', 'higher_is_better', 'normalization', 'budgets': [{'budget',
  'rank_correlation', 'mean_relative_to_full', 'runs': [{'preference', 'config', 'macs', 'metrics', 'overall',
  'weighted'}]}], 'hypervolume'} (budgets below the cheapest measured config are reported with 'error');
  'mean_relative_to_full' is the sweep's mean of each chosen config's mean relative metric against the
  full-width config (the 'reference' units whatever `normalization` is, so sweeps of two normalizations
  compare in quality).
  """
  check_normalization(normalization)  # here, up front: a search's ValueError becomes a budget's 'error'
  hib = {t: True for t in tasks}
  hib.update(higher_is_better or {})
  out = {"tasks": list(tasks), "higher_is_better": {t: bool(hib[t]) for t in tasks}, "normalization": normalization,
         "budgets": []}
  ref_rel = relative_performance(table, tasks, hib, "reference")
  index = {m.config: i for i, m in enumerate(table)}
  for b in budgets:
    entry = {"budget": float(b), "runs": []}
    try:
      results = [search(b, pref, table, tasks, hib, normalization) for pref in preferences]
    except ValueError as e:
      entry["error"] = str(e)
      out["budgets"].append(entry)
      continue
    for pref, r in zip(preferences, results):
      entry["runs"].append({"preference": list(normalize_preference(pref, tasks).values()), **r.to_json()})
    entry["distinct_preferences"] = len({tuple(np.round(p, 9)) for p in np.asarray(preferences)})
    entry["distinct_configs"] = len({r.config for r in results})
    # Quality of the sweep's choices in units that do not depend on `normalization`: the mean over the sweep of
    # each chosen config's mean over tasks of its metric relative to the full-width config (search's 'reference').
    entry["mean_relative_to_full"] = float(np.mean([ref_rel[index[r.config]].mean() for r in results]))
    perf = np.array([[r.metrics[t] for t in tasks] for r in results])
    entry["rank_correlation"] = (rank_correlation(np.asarray(preferences), perf, [hib[t] for t in tasks])
                                 if len(results) >= 2 else None)
    out["budgets"].append(entry)
  full = max(m.macs for m in table)
  out["hypervolume"] = {t: hypervolume_2d(np.array([m.macs / full for m in table]),
                                          np.array([m.metrics[t] for m in table]), hib[t],
                                          (1.0, _worst([m.metrics[t] for m in table], hib[t])))
                        for t in tasks}
  out["hypervolume_note"] = ("area of each task's metric-vs-MACs front (MACs as a fraction of full width), "
                             "reference (1.0, the worst metric in the table)")
  out["num_configs"] = len(table)
  return out


def _worst(values: Sequence[float], higher_is_better: bool) -> float:
  return float(min(values) if higher_is_better else max(values))


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


def _place_labels(xy_display: np.ndarray, size: tuple[float, float]) -> list[tuple[float, float]]:
  """Greedy label offsets (points) so that label boxes of `size` do not overlap each other."""
  candidates = [(6, 6), (6, -12), (-6 - size[0], 6), (-6 - size[0], -12), (6, 18), (6, -24), (-6 - size[0], 18),
                (-6 - size[0], -24), (6, 30), (6, -36)]
  placed, out = [], []
  for x, y in xy_display:
    for dx, dy in candidates:
      box = (x + dx, y + dy, x + dx + size[0], y + dy + size[1])
      if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in placed):
        break
    placed.append(box)
    out.append((dx, dy))
  return out


def plot_task_fronts(table: Sequence[Measurement], tasks: Sequence[str], path: str,
                     higher_is_better: Mapping[str, bool] | None = None, searched: Sequence[Mapping] = (),
                     fixed: Sequence[Mapping] = ()) -> str:
  """PNG: one panel per task, metric vs MACs (fraction of full width) of every measured configuration, the
  task's front drawn, `fixed` models ({'width', 'macs_fraction', 'metrics'}) as separate markers, and the
  `searched` configurations ({'config', 'macs', 'metrics'}) numbered without overlapping labels; the numbers are
  keyed to the configurations in a text box below the panels. Returns `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  hib = {t: True for t in tasks}
  hib.update(higher_is_better or {})
  full = max(m.macs for m in table)
  x = np.array([m.macs / full for m in table])
  uniq = list(dict.fromkeys(r["config"] for r in searched))
  fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.4), dpi=110, squeeze=False)
  for ax, t in zip(axes[0], tasks):
    y = np.array([m.metrics[t] for m in table])
    ax.scatter(x, y, s=6, c="0.7", label=f"all {len(table)} configs (val)")
    front = pareto_front(np.stack([x, y], 1), (False, hib[t]))
    ax.step(x[front], y[front], "k-", where="post", lw=1.2, label="front")
    for f in fixed:
      ax.plot(f["macs_fraction"], f["metrics"][t], "r*", ms=11, mec="k", mew=0.5)
    if fixed:
      ax.plot([], [], "r*", ms=9, label="fixed-width models (test)")
    if uniq:
      pts = {}
      for r in searched:
        pts[r["config"]] = (r["macs"] / full, r["metrics"][t])
      xy = np.array([pts[c] for c in uniq])
      ax.scatter(xy[:, 0], xy[:, 1], s=22, facecolors="none", edgecolors="tab:blue", label="searched (val)")
      fig.canvas.draw()
      disp = ax.transData.transform(xy) * 72.0 / fig.dpi
      for i, (off, (px, py)) in enumerate(zip(_place_labels(disp, (10, 8)), xy)):
        ax.annotate(str(i + 1), (px, py), xytext=off, textcoords="offset points", fontsize=7, color="tab:blue",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "tab:blue"})
    ax.set_xlabel("MACs / full-width MACs")
    ax.set_ylabel(f"{t} ({'higher' if hib[t] else 'lower'} is better)")
    ax.set_title(t)
    ax.legend(fontsize=7, loc="best")
  if uniq:
    text = "   ".join(f"{i + 1}: {c}" for i, c in enumerate(uniq))
    fig.text(0.01, 0.005, "\n".join(_wrap(text, 170)), fontsize=6.5, va="bottom", family="monospace")
    fig.subplots_adjust(bottom=0.12 + 0.03 * len(_wrap(text, 170)))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def _wrap(text: str, width: int) -> list[str]:
  lines, cur = [], ""
  for part in text.split("   "):
    if cur and len(cur) + 3 + len(part) > width:
      lines.append(cur)
      cur = part
    else:
      cur = f"{cur}   {part}" if cur else part
  return lines + ([cur] if cur else [])
