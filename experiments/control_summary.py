r"""Seeds and ablation of the controllable benchmark in one JSON and one set of markdown tables.

  python -m experiments.control_summary --seeds 0=ctrl_s0.json,1=ctrl_s1.json \
      --ablation both=ctrl_s0.json,cikd=ctrl_cikd_s0.json,outputs=ctrl_distill_s0.json,neither=ctrl_none_s0.json \
      --json docs/control_fashion_scenes.json

Every input is the `--json` of `experiments.control` for one controllable run (with --fixed_width_runs of the
same seed). The output keeps that file's layout (the first seed's file, so `fixed_width[].width`,
`fixed_width[].delta_m`, `report.budgets[].runs`, `report.budgets[].rank_correlation` stay where they were) and
replaces the two headline numbers by their mean over seeds:
  * `fixed_width[].delta_m`: mean over seeds, with `delta_m_per_seed`, `delta_m_min`, `delta_m_max`;
  * `report.budgets[].rank_correlation`: per-task and mean Spearman averaged over seeds (a task undefined in a
    seed is left out of that task's average), with `rank_correlation_per_seed`;
and adds `seeds` (seed -> its file) and `ablation` (variant -> delta-m per width, mean Spearman per budget,
hypervolume per task, and where the reports have it the sweep's mean metric relative to the full-width
configuration per budget). --normalization searches every input's stored table again with the search's
'reference' (the paper's) or 'range' units before summarizing (`recompute_report`), e.g.
  python -m experiments.control_summary --seeds 0=ctrl_s0.json,1=ctrl_s1.json --normalization range \
      --lower_is_better depth --json ctrl_range.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
from typing import Mapping, Sequence

import numpy as np

from mtl.control.search import NORMALIZATIONS, Measurement
from mtl.control.widths import parse_config


def _nanmean(values: Sequence[float]) -> float:
  finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  return sum(finite) / len(finite) if finite else float("nan")


def _check_same_layout(per_seed: Mapping[str, dict]) -> None:
  seeds = list(per_seed)
  first = per_seed[seeds[0]]
  widths = [f["width"] for f in first.get("fixed_width", [])]
  budgets = [b["budget"] for b in first["report"]["budgets"]]
  for s in seeds[1:]:
    other = per_seed[s]
    if [f["width"] for f in other.get("fixed_width", [])] != widths:
      raise ValueError(f"seed {s}: fixed-width widths {[f['width'] for f in other.get('fixed_width', [])]} "
                       f"!= seed {seeds[0]}'s {widths}")
    if [b["budget"] for b in other["report"]["budgets"]] != budgets:
      raise ValueError(f"seed {s}: report budgets differ from seed {seeds[0]}'s")
    if other["report"]["tasks"] != first["report"]["tasks"]:
      raise ValueError(f"seed {s}: tasks {other['report']['tasks']} != {first['report']['tasks']}")


def summarize(per_seed: Mapping[str, dict], ablation: Mapping[str, dict] | None = None) -> dict:
  """Seed -> experiments.control JSON (same widths, budgets, tasks) -> the combined JSON (module doc)."""
  if not per_seed:
    raise ValueError("summarize needs at least one seed")
  for s, d in per_seed.items():
    missing = [k for k in ("report", "fixed_width", "table") if k not in d]
    if missing:
      raise ValueError(f"seed {s}: not an experiments.control --json file (missing {missing})")
    if not d["fixed_width"]:
      raise ValueError(f"seed {s}: no fixed-width comparison (run experiments.control with --fixed_width_runs)")
  _check_same_layout(per_seed)
  seeds = list(per_seed)
  out = copy.deepcopy(per_seed[seeds[0]])
  out["seeds"] = {s: {"chosen": d["chosen"]["config"], "fixed_width": [
      {"width": f["width"], "delta_m": f["delta_m"], "fixed_workdir": f["fixed_workdir"]} for f in d["fixed_width"]]}
      for s, d in per_seed.items()}
  for i, entry in enumerate(out["fixed_width"]):
    values = [float(per_seed[s]["fixed_width"][i]["delta_m"]) for s in seeds]
    entry["delta_m_per_seed"] = dict(zip(seeds, values))
    entry["delta_m"] = sum(values) / len(values)
    entry["delta_m_min"], entry["delta_m_max"] = min(values), max(values)
  tasks = out["report"]["tasks"]
  for i, entry in enumerate(out["report"]["budgets"]):
    per = {s: per_seed[s]["report"]["budgets"][i].get("rank_correlation") for s in seeds}
    per = {s: rc for s, rc in per.items() if rc}
    if not per:
      continue
    per_task = [_nanmean([rc["per_task"][t] for rc in per.values()]) for t in range(len(tasks))]
    entry["rank_correlation"] = {"per_task": per_task, "mean": _nanmean(per_task)}
    entry["rank_correlation_per_seed"] = per
    quality = [per_seed[s]["report"]["budgets"][i].get("mean_relative_to_full") for s in seeds]
    if all(q is not None for q in quality):
      entry["mean_relative_to_full"] = sum(quality) / len(quality)
  out["report"]["hypervolume_per_seed"] = {s: d["report"]["hypervolume"] for s, d in per_seed.items()}
  out["ablation"] = {name: ablation_row(d) for name, d in (ablation or {}).items()}
  return out


def recompute_report(d: dict, normalization: str, lower_is_better: Sequence[str] | None = None) -> dict:
  """A copy of one experiments.control JSON whose `report` is searched again from its stored `table` (validation
  metrics of every configuration) with `normalization`, same budgets and preference sweep (checked against the
  stored runs). `chosen`, `test` and `fixed_width` are kept (they do not depend on the sweep). Task directions
  come from the report's `higher_is_better` (written since the normalization option) or, for older files,
  from `lower_is_better` (task names); both given must agree."""
  from mtl.control import controllability  # scipy: only when a report is searched again
  report = d["report"]
  tasks = report["tasks"]
  if lower_is_better is not None:
    unknown = sorted(set(lower_is_better) - set(tasks))
    if unknown:
      raise ValueError(f"--lower_is_better names {unknown}, not tasks of this run {tasks}")
  given = None if lower_is_better is None else {t: t not in lower_is_better for t in tasks}
  stored = report.get("higher_is_better")
  if stored is None and given is None:
    raise ValueError("this experiments.control JSON has no report.higher_is_better (written before the search's "
                     "normalization option): pass --lower_is_better with the tasks whose metric is an error")
  if stored is not None and given is not None and dict(stored) != given:
    raise ValueError(f"--lower_is_better gives directions {given}, the file says {dict(stored)}")
  hib = dict(stored) if stored is not None else given
  table = [Measurement(parse_config(m["config"]), int(m["macs"]), m["metrics"]) for m in d["table"]]
  budgets = [b["budget"] for b in report["budgets"]]
  with_runs = [b for b in report["budgets"] if b.get("runs")]
  if not with_runs:
    raise ValueError("the stored report has no searched runs to take the preference sweep from")
  stored_prefs = np.array([r["preference"] for r in with_runs[0]["runs"]])
  prefs = controllability.preference_sweep(len(tasks), len(stored_prefs))
  if prefs.shape != stored_prefs.shape or not np.allclose(prefs, stored_prefs, atol=1e-9):
    raise ValueError(f"preference_sweep({len(tasks)}, {len(stored_prefs)}) does not reproduce the stored sweep")
  out = copy.deepcopy(d)
  out["report"] = controllability.controllability_report(table, tasks, budgets, prefs, hib, normalization)
  return out


def ablation_row(d: dict) -> dict:
  """One variant's headline figures: delta-m per width, mean Spearman per budget, hypervolume per task."""
  return {"delta_m": {str(f["width"]): float(f["delta_m"]) for f in d.get("fixed_width", [])},
          "spearman": {f"{b['budget'] / d['full_macs']:.2f}": (b["rank_correlation"] or {}).get("mean")
                       for b in d["report"]["budgets"] if b.get("rank_correlation")},
          "hypervolume": dict(d["report"]["hypervolume"]),
          "mean_relative_to_full": {f"{b['budget'] / d['full_macs']:.2f}": b["mean_relative_to_full"]
                                    for b in d["report"]["budgets"] if "mean_relative_to_full" in b}}


def markdown(summary: dict) -> str:
  """Tables: delta-m per width (mean, per seed, range); Spearman per budget; ablation."""
  seeds = list(summary["seeds"])
  tasks = summary["report"]["tasks"]
  lines = ["| width | MACs / full | delta-m mean | " + " | ".join(f"seed {s}" for s in seeds) + " | range |",
           "|---|---|---|" + "---|" * len(seeds) + "---|"]
  for f in summary["fixed_width"]:
    per = " | ".join(f"{f['delta_m_per_seed'][s]:+.2f}%" for s in seeds)
    lines.append(f"| {f['width']:g} | {f['macs_fraction']:.3f} | **{f['delta_m']:+.2f}%** | {per} | "
                 f"{f['delta_m_min']:+.2f}% .. {f['delta_m_max']:+.2f}% |")
  quality = any("mean_relative_to_full" in b for b in summary["report"]["budgets"])
  lines += ["", "| budget (fraction of full MACs) | mean Spearman (seed mean) | "
            + " | ".join(tasks) + " | " + " | ".join(f"seed {s} mean" for s in seeds)
            + (" | choices' metric vs full width (seed mean) |" if quality else " |"),
            "|---|---|" + "---|" * len(tasks) + "---|" * len(seeds) + ("---|" if quality else "")]
  full = summary["full_macs"]
  for b in summary["report"]["budgets"]:
    rc = b.get("rank_correlation")
    if not rc:
      continue
    per_seed = b.get("rank_correlation_per_seed", {})
    cells = " | ".join(f"{v:+.3f}" if math.isfinite(v) else "undefined" for v in rc["per_task"])
    seed_cells = " | ".join(f"{per_seed[s]['mean']:+.3f}" if s in per_seed else "n/a" for s in seeds)
    q = b.get("mean_relative_to_full")
    q_cell = (f" {100 * q:+.2f}% |" if q is not None else " n/a |") if quality else ""
    lines.append(f"| {b['budget'] / full:.2f} | **{rc['mean']:+.3f}** | {cells} | {seed_cells} |{q_cell}")
  if summary.get("ablation"):
    names = list(summary["ablation"])
    first = summary["ablation"][names[0]]
    widths, budgets = list(first["delta_m"]), list(first["spearman"])
    lines += ["", "| variant | " + " | ".join(f"delta-m w={w}" for w in widths) + " | "
              + " | ".join(f"Spearman {b}" for b in budgets) + " | " + " | ".join(f"HV {t}" for t in tasks) + " |",
              "|---|" + "---|" * (len(widths) + len(budgets) + len(tasks))]
    for name in names:
      row = summary["ablation"][name]
      lines.append(f"| {name} | " + " | ".join(f"{row['delta_m'].get(w, float('nan')):+.2f}%" for w in widths)
                   + " | " + " | ".join(f"{row['spearman'].get(b) or float('nan'):+.3f}" for b in budgets)
                   + " | " + " | ".join(f"{row['hypervolume'][t]:.5f}" for t in tasks) + " |")
  return "\n".join(lines)


def _pairs(text: str | None, what: str) -> dict[str, dict]:
  out = {}
  for part in (text or "").split(","):
    if not part:
      continue
    name, sep, path = part.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--{what} entry {part!r} must be NAME=PATH")
    try:
      with open(path) as f:
        out[name] = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"--{what} {name}: cannot read {path!r}: {e}") from e
  return out


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", required=True, help="SEED=experiments.control json, comma-separated")
  parser.add_argument("--ablation", default=None, help="VARIANT=experiments.control json, comma-separated")
  parser.add_argument("--json", default=None, help="write the combined JSON here")
  parser.add_argument("--normalization", default=None, choices=list(NORMALIZATIONS),
                      help="search every input's stored table again with these units (mtl/control/search.py) "
                           "before summarizing; default: keep each file's report")
  parser.add_argument("--lower_is_better", default=None,
                      help="comma-separated tasks whose metric is an error (only for files written before "
                           "report.higher_is_better existed; with --normalization)")
  args = parser.parse_args(argv)
  if args.lower_is_better is not None and args.normalization is None:
    parser.error("--lower_is_better only matters with --normalization")
  seeds, ablation = _pairs(args.seeds, "seeds"), _pairs(args.ablation, "ablation")
  if args.normalization:
    lib = None if args.lower_is_better is None else [t for t in args.lower_is_better.split(",") if t]
    seeds = {k: recompute_report(v, args.normalization, lib) for k, v in seeds.items()}
    ablation = {k: recompute_report(v, args.normalization, lib) for k, v in ablation.items()}
  summary = summarize(seeds, ablation)
  print(markdown(summary))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=1)
  return summary


if __name__ == "__main__":
  main()
