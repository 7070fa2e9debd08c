"""Budget + task preference -> width configuration, from validation metrics of sampled configurations.

Search rule (after Aich et al., ICCV 2023: larger decoders for preferred tasks, the encoder searched for the
best overall performance):
  1. Feasible: measured configs with MACs <= budget (none -> ValueError naming the cheapest config).
  2. Decoder ordering: keep configs whose head widths are ordered like the preference
     (p_i > p_j  =>  w_i >= w_j); if none is feasible, keep all feasible ones.
  3. For every encoder width, pick the decoder allocation with the best preference-weighted score
     sum_t p_t * rel_t (rel_t: task t's metric, sign-adjusted so larger is better, in the units that
     `normalization` names:
       'reference' (the paper's, default): relative to the reference config, (m_t - ref_t) / |ref_t|; the
         reference is the full-width config when measured, else the per-task best;
       'range': (m_t - best_t) / (best_t - worst_t) over the table, so every task spans [-1, 0] and a unit of
         preference buys the same share of each task's attainable range (a task whose metric moves a lot in
         relative terms, e.g. mIoU, no longer outbids the others at equal preference).
  4. Among those, return the encoder width whose allocation has the best *overall* score mean_t rel_t
     (ties: higher preference-weighted score, then more MACs).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mtl.control.widths import WidthConfig


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One sampled configuration: its MACs (per example) and validation metrics (task -> main metric)."""
  config: WidthConfig
  macs: int
  metrics: Mapping[str, float]

  def to_json(self) -> dict:
    return {"config": self.config.key(), "macs": int(self.macs),
            "metrics": {k: float(v) for k, v in self.metrics.items()}}


@dataclasses.dataclass(frozen=True)
class SearchResult:
  config: WidthConfig
  macs: int
  metrics: Mapping[str, float]
  overall: float      # mean relative performance over tasks
  weighted: float     # preference-weighted relative performance

  def to_json(self) -> dict:
    return {"config": self.config.key(), "macs": int(self.macs), "overall": float(self.overall),
            "weighted": float(self.weighted), "metrics": {k: float(v) for k, v in self.metrics.items()}}


def normalize_preference(preference: Sequence[float] | Mapping[str, float], tasks: Sequence[str]
                         ) -> dict[str, float]:
  """Task -> weight, non-negative and summing to 1. A sequence is in `tasks` order."""
  if isinstance(preference, Mapping):
    if sorted(preference) != sorted(tasks):
      raise ValueError(f"preference tasks {sorted(preference)} != tasks {sorted(tasks)}")
    p = np.array([float(preference[t]) for t in tasks])
  else:
    p = np.asarray(preference, dtype=np.float64)
    if p.shape != (len(tasks),):
      raise ValueError(f"preference has {p.size} values but there are {len(tasks)} tasks {list(tasks)}")
  if np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
    raise ValueError(f"preference must be finite, non-negative and not all zero, got {p.tolist()}")
  return dict(zip(tasks, (p / p.sum()).tolist()))


NORMALIZATIONS = ("reference", "range")


def check_normalization(normalization: str) -> None:
  """ValueError unless `normalization` is one of NORMALIZATIONS (the units of `relative_performance`)."""
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def relative_performance(table: Sequence[Measurement], tasks: Sequence[str],
                         higher_is_better: Mapping[str, bool] | None = None,
                         normalization: str = "reference") -> np.ndarray:
  """[N, T] sign-adjusted metrics, larger is better (0 at the reference / the best).

  'reference': s_t * (m_t - ref_t) / |ref_t|, ref = the full-width config (all widths 1.0) when it is in the
  table, else the per-task best. 'range': (q_t - max q_t) / (max q_t - min q_t) with q_t = s_t * m_t over the
  table (a task constant over the table gives 0).
  """
  check_normalization(normalization)
  hib = {t: True for t in tasks}
  hib.update(higher_is_better or {})
  for m in table:
    missing = [t for t in tasks if t not in m.metrics]
    if missing:
      raise ValueError(f"measurement {m.config.key()} lacks metrics for tasks {missing}")
  vals = np.array([[float(m.metrics[t]) for t in tasks] for m in table])
  sign = np.array([1.0 if hib[t] else -1.0 for t in tasks])
  if normalization == "range":
    q = vals * sign
    spread = q.max(axis=0) - q.min(axis=0)
    return (q - q.max(axis=0)) / np.where(spread > 1e-12, spread, 1.0)
  full = [i for i, m in enumerate(table)
          if m.config.encoder == 1.0 and all(w == 1.0 for _, w in m.config.heads)]
  ref = vals[full[0]] if full else np.max(vals * sign, axis=0) * sign
  scale = np.where(np.abs(ref) > 1e-12, np.abs(ref), 1.0)
  return sign * (vals - ref) / scale


def _ordered(config: WidthConfig, pref: Mapping[str, float]) -> bool:
  w = config.head_widths
  return all(w[a] >= w[b] for a in pref for b in pref if pref[a] > pref[b] + 1e-12)


def search(budget: float, preference: Sequence[float] | Mapping[str, float], table: Sequence[Measurement],
           tasks: Sequence[str], higher_is_better: Mapping[str, bool] | None = None,
           normalization: str = "reference") -> SearchResult:
  """Width config for a MACs budget (per example, absolute) and a task preference (see module doc).

  Args:
    budget: MACs per example the sub-network may use.
    preference: one non-negative weight per task (`tasks` order) or task -> weight.
    table: measured configurations (validation metrics); every config must have heads == tasks.
    tasks: task names; higher_is_better: task -> bool (default True).
    normalization: units of the scores, 'reference' (the paper's) or 'range' (see module doc).
  """
  if not table:
    raise ValueError("search needs a non-empty table of measured configurations")
  pref = normalize_preference(preference, tasks)
  for m in table:
    if sorted(m.config.head_widths) != sorted(tasks):
      raise ValueError(f"measured config {m.config.key()} has heads != tasks {sorted(tasks)}")
  rel = relative_performance(table, tasks, higher_is_better, normalization)
  p = np.array([pref[t] for t in tasks])
  feasible = [i for i, m in enumerate(table) if m.macs <= budget]
  if not feasible:
    cheapest = min(table, key=lambda m: m.macs)
    raise ValueError(f"budget {budget:g} MACs is below the cheapest measured config "
                     f"{cheapest.config.key()} ({cheapest.macs} MACs)")
  ordered = [i for i in feasible if _ordered(table[i].config, pref)] or feasible
  best_per_encoder: dict[float, int] = {}
  for i in ordered:
    e = table[i].config.encoder
    j = best_per_encoder.get(e)
    if j is None or (rel[i] @ p, table[i].macs) > (rel[j] @ p, table[j].macs):
      best_per_encoder[e] = i
  best = max(best_per_encoder.values(), key=lambda i: (rel[i].mean(), rel[i] @ p, table[i].macs))
  m = table[best]
  return SearchResult(m.config, int(m.macs), dict(m.metrics), float(rel[best].mean()), float(rel[best] @ p))
