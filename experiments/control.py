r"""Budget + preference -> width configuration, and the controllability table of a slimmable run.

  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3
  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3 --json ctrl.json

--budget is a fraction of the full-width MACs when <= 1, else MACs per example. The first call measures EVERY
width configuration on the validation split (--num_configs 0, the default: W * W evaluations give all W ** (T + 1)
configurations, mtl/control/table.py:measure_all_configs; or --num_configs N sampled ones), cached in
<workdir>/control_table.json; the search picks from them; the chosen configuration is then evaluated on the test
split. The controllability report goes to --json: at each of --report_budgets (fractions of full MACs) the search
for each of >= --preference_points distinct preference vectors (a grid on the simplex), the per-task and mean
Spearman correlation between preference weight and task metric, and the hypervolume of each task's
metric-vs-MACs front. --normalization sets the units the search weighs tasks in ('reference', the paper's
default: relative to the full-width configuration; 'range': each task's metric scaled to its range over the
table, mtl/control/search.py). PNGs in the workdir: per-task fronts (task_fronts.png, with the fixed-width
models and the searched configurations), the 2-task Pareto plane and the budget curves.

--fixed_width_runs 0.5=DIR,1.0=DIR2 compares with independently trained fixed-width models (e.g.
`configs/fashion_scenes.py:width=0.5`, the same channel counts as the slimmable model at width 0.5): the
slimmable model is evaluated on the test split at the uniform configuration (encoder and every head at that
width) and delta-m (%, > 0: the controllable model is better) is computed against each run's test metrics.
"""
from __future__ import annotations

import json
import os

import ml_collections
from absl import app, flags, logging

from mtl import evaluate as evaluate_lib
from mtl.control import controllability, search as search_lib
from mtl.control.table import load_or_measure, parse_preference
from mtl.control.macs import count_macs, count_macs_from_config
from mtl.control.widths import WidthConfig
from mtl.train import loop

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a run trained with a control config.")
_BUDGET = flags.DEFINE_float("budget", 1.0, "MACs budget: fraction of full width (<= 1) or MACs per example.")
_PREFERENCE = flags.DEFINE_string("preference", None, "Comma-separated task weights (default: uniform).")
_NUM_CONFIGS = flags.DEFINE_integer("num_configs", 0, "Width configurations to measure (0: every one).")
_BUDGETS = flags.DEFINE_string("report_budgets", "0.25,0.5,0.75", "Budget fractions of the report.")
_SWEEP = flags.DEFINE_integer("preference_points", 10, "At least this many distinct preference vectors per budget.")
_MAX_BATCHES = flags.DEFINE_integer("max_val_batches", None, "Limit validation batches per configuration.")
_FIXED = flags.DEFINE_string("fixed_width_runs", None,
                             "width=workdir pairs of fixed-width runs to compare with, comma-separated.")
_NORMALIZATION = flags.DEFINE_enum(
    "normalization", "reference", list(search_lib.NORMALIZATIONS),
    "Units the search weighs tasks in: 'reference' (the paper's: relative to the full-width config) or 'range' "
    "(each task's metric scaled to its range over the table); see mtl/control/search.py.")
_JSON = flags.DEFINE_string("json", None, "Write the chosen config and the controllability report here.")
flags.mark_flags_as_required(["workdir"])


def parse_fixed_runs(value: str) -> list[tuple[float, str]]:
  """'0.5=DIR,1.0=DIR2' -> [(0.5, 'DIR'), (1.0, 'DIR2')]; bad widths or missing results name the problem."""
  out = []
  for part in value.split(","):
    width, sep, workdir = part.partition("=")
    try:
      w = float(width)
    except ValueError:
      w = -1.0
    if not sep or not workdir or not 0.0 < w <= 1.0:
      raise ValueError(f"--fixed_width_runs entry {part!r} must be <width in (0, 1]>=<workdir>")
    if not os.path.exists(os.path.join(workdir, "results.json")):
      raise ValueError(f"fixed-width run {workdir!r} has no results.json (train it to the end first)")
    out.append((w, workdir))
  return out


def compare_fixed_width(exp, state, runs: list[tuple[float, str]]) -> list[dict]:
  """Test metrics of the slimmable model at each uniform width vs the fixed-width run's, with delta-m."""
  names = [t.name for t in exp.tasks]
  hib = {t.name: t.higher_is_better for t in exp.tasks}
  split = exp.config.dataset.get("test_split", "test")
  out = []
  for width, workdir in runs:
    config = WidthConfig.create(width, {n: width for n in names}).validate(exp.config.control.widths, names)
    with open(os.path.join(workdir, "results.json")) as f:
      fixed_test = json.load(f)["test"]
    missing = sorted(set(names) - set(fixed_test))
    if missing:
      raise ValueError(f"fixed-width run {workdir!r} has no test metrics for task(s) {missing}")
    ours = loop.evaluate_split(exp, state, split, model_kwargs=config.apply_kwargs())
    main_ours = evaluate_lib.main_metrics(ours, exp.tasks)
    main_fixed = evaluate_lib.main_metrics(fixed_test, exp.tasks)
    shape = tuple(exp.info.input_shape)
    macs = count_macs(exp.model, config, shape)["total"]
    with open(os.path.join(workdir, "config.json")) as f:
      fixed_model_cfg = ml_collections.ConfigDict(json.load(f)["model"])
    full = WidthConfig.create(1.0, {n: 1.0 for n in names})
    fixed_macs = count_macs_from_config(fixed_model_cfg, exp.tasks, full, shape)["total"]
    full_macs = count_macs(exp.model, full, shape)["total"]
    out.append({"width": width, "fixed_workdir": workdir, "macs_fraction": fixed_macs / full_macs,
                "config": config.key(), "controllable": main_ours,
                "fixed": main_fixed, "delta_m": evaluate_lib.delta_m(main_ours, main_fixed, hib),
                "macs": macs, "fixed_macs": fixed_macs})
    print(f"\nwidth {width}: controllable {config.key()} ({macs:,} MACs) vs fixed-width run {workdir} "
          f"({fixed_macs:,} MACs)")
    for n in names:
      print(f"  {n:12s} controllable {main_ours[n]:.4f}  fixed {main_fixed[n]:.4f}")
    print(f"  delta-m vs fixed-width: {out[-1]['delta_m']:+.2f}%")
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  exp, state, step = loop.restore_experiment(_WORKDIR.value)
  names = [t.name for t in exp.tasks]
  hib = {t.name: t.higher_is_better for t in exp.tasks}
  preference = parse_preference(_PREFERENCE.value, names)
  table = load_or_measure(_WORKDIR.value, exp, state, step, _NUM_CONFIGS.value, _MAX_BATCHES.value)
  full = max(m.macs for m in table)
  budget = _BUDGET.value * full if _BUDGET.value <= 1 else _BUDGET.value
  chosen = search_lib.search(budget, preference, table, names, hib, _NORMALIZATION.value)
  test = loop.evaluate_split(exp, state, exp.config.dataset.get("test_split", "test"),
                             model_kwargs=chosen.config.apply_kwargs())
  print(f"budget {budget:,.0f} MACs/example ({budget / full:.2f} of full width), preference "
        f"{dict(zip(names, preference))}")
  print(f"chosen config: {chosen.config.key()}  MACs/example: {chosen.macs:,} ({chosen.macs / full:.2f} of full)")
  print("test metrics of the chosen config:")
  print(evaluate_lib.format_table(test))

  fractions = [float(b) for b in _BUDGETS.value.split(",")]
  prefs = controllability.preference_sweep(len(names), _SWEEP.value)
  report = controllability.controllability_report(table, names, [f * full for f in fractions], prefs, hib,
                                                  _NORMALIZATION.value)
  print("\ncontrollability (Spearman rank correlation of preference vs task metric, per budget):")
  for frac, entry in zip(fractions, report["budgets"]):
    rc = entry.get("rank_correlation")
    print(f"  budget {frac:.2f}: " + (f"mean {rc['mean']:+.3f}  per task {rc['per_task']}" if rc else
                                      entry.get("error", "n/a")))
  pngs = []
  if len(names) >= 2:
    runs = next((e["runs"] for e in reversed(report["budgets"]) if e.get("runs")), None)
    pngs.append(controllability.plot_pareto(table, (names[0], names[1]),
                                            os.path.join(_WORKDIR.value, "pareto.png"), chosen=runs,
                                            higher_is_better=hib))
  pngs.append(controllability.plot_budget_curves(report, os.path.join(_WORKDIR.value, "budget_curves.png")))
  print("hypervolume of each task's metric-vs-MACs front (MACs as a fraction of full):",
        {t: round(v, 5) for t, v in report["hypervolume"].items()})
  fixed = compare_fixed_width(exp, state, parse_fixed_runs(_FIXED.value)) if _FIXED.value else []
  searched = [r for e in report["budgets"] for r in e.get("runs", [])]
  fixed_pts = [{"width": f["width"], "macs_fraction": f["macs_fraction"], "metrics": f["fixed"]} for f in fixed]
  pngs.append(controllability.plot_task_fronts(table, names, os.path.join(_WORKDIR.value, "task_fronts.png"),
                                               hib, searched=searched, fixed=fixed_pts))
  print("plots:", ", ".join(pngs))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"chosen": chosen.to_json(), "test": test, "budget_macs": budget, "full_macs": full,
                 "report": report, "table": [m.to_json() for m in table], "fixed_width": fixed}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
