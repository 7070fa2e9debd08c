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
hypervolume per task).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
from typing import Mapping, Sequence


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
  out["report"]["hypervolume_per_seed"] = {s: d["report"]["hypervolume"] for s, d in per_seed.items()}
  out["ablation"] = {name: ablation_row(d) for name, d in (ablation or {}).items()}
  return out


def ablation_row(d: dict) -> dict:
  """One variant's headline figures: delta-m per width, mean Spearman per budget, hypervolume per task."""
  return {"delta_m": {str(f["width"]): float(f["delta_m"]) for f in d.get("fixed_width", [])},
          "spearman": {f"{b['budget'] / d['full_macs']:.2f}": (b["rank_correlation"] or {}).get("mean")
                       for b in d["report"]["budgets"] if b.get("rank_correlation")},
          "hypervolume": dict(d["report"]["hypervolume"])}


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
  lines += ["", "| budget (fraction of full MACs) | mean Spearman (seed mean) | "
            + " | ".join(tasks) + " | " + " | ".join(f"seed {s} mean" for s in seeds) + " |",
            "|---|---|" + "---|" * len(tasks) + "---|" * len(seeds)]
  full = summary["full_macs"]
  for b in summary["report"]["budgets"]:
    rc = b.get("rank_correlation")
    if not rc:
      continue
    per_seed = b.get("rank_correlation_per_seed", {})
    cells = " | ".join(f"{v:+.3f}" if math.isfinite(v) else "undefined" for v in rc["per_task"])
    seed_cells = " | ".join(f"{per_seed[s]['mean']:+.3f}" if s in per_seed else "n/a" for s in seeds)
    lines.append(f"| {b['budget'] / full:.2f} | **{rc['mean']:+.3f}** | {cells} | {seed_cells} |")
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
  args = parser.parse_args(argv)
  summary = summarize(_pairs(args.seeds, "seeds"), _pairs(args.ablation, "ablation"))
  print(markdown(summary))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=1)
  return summary


if __name__ == "__main__":
  main()
