r"""Budget + preference -> width configuration, and the controllability table of a slimmable run.

  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3
  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3 --json ctrl.json

--budget is a fraction of the full-width MACs when <= 1, else MACs per example. The first call measures
--num_configs sampled width configurations on the validation split (cached in <workdir>/control_table.json);
the search picks from them; the chosen configuration is then evaluated on the test split. The controllability
report (rank correlation of preference vs performance at each budget, performance vs budget) goes to --json,
and the Pareto-front and budget-curve PNGs to the workdir.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging

from mtl import evaluate as evaluate_lib
from mtl.control import controllability, search as search_lib
from mtl.control.table import load_or_measure, parse_preference
from mtl.train import loop

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a run trained with a control config.")
_BUDGET = flags.DEFINE_float("budget", 1.0, "MACs budget: fraction of full width (<= 1) or MACs per example.")
_PREFERENCE = flags.DEFINE_string("preference", None, "Comma-separated task weights (default: uniform).")
_NUM_CONFIGS = flags.DEFINE_integer("num_configs", 16, "Width configurations to measure for the search.")
_BUDGETS = flags.DEFINE_string("report_budgets", "0.25,0.5,0.75,1.0", "Budget fractions of the report.")
_SWEEP = flags.DEFINE_integer("preference_points", 5, "Preference vectors per budget in the report.")
_MAX_BATCHES = flags.DEFINE_integer("max_val_batches", None, "Limit validation batches per configuration.")
_JSON = flags.DEFINE_string("json", None, "Write the chosen config and the controllability report here.")
flags.mark_flags_as_required(["workdir"])


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
  chosen = search_lib.search(budget, preference, table, names, hib)
  test = loop.evaluate_split(exp, state, exp.config.dataset.get("test_split", "test"),
                             model_kwargs=chosen.config.apply_kwargs())
  print(f"budget {budget:,.0f} MACs/example ({budget / full:.2f} of full width), preference "
        f"{dict(zip(names, preference))}")
  print(f"chosen config: {chosen.config.key()}  MACs/example: {chosen.macs:,} ({chosen.macs / full:.2f} of full)")
  print("test metrics of the chosen config:")
  print(evaluate_lib.format_table(test))

  fractions = [float(b) for b in _BUDGETS.value.split(",")]
  prefs = controllability.preference_sweep(len(names), _SWEEP.value)
  report = controllability.controllability_report(table, names, [f * full for f in fractions], prefs, hib)
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
  print("plots:", ", ".join(pngs))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"chosen": chosen.to_json(), "test": test, "budget_macs": budget, "full_macs": full,
                 "report": report, "table": [m.to_json() for m in table]}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
