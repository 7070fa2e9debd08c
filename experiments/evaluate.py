r"""Loads the latest checkpoint of a workdir, prints per-task test metrics and delta-m.

  python -m experiments.evaluate --workdir /tmp/mf \
      --baselines left=/tmp/mf_left,right=/tmp/mf_right      # single-task runs' workdirs
  python -m experiments.evaluate --workdir /tmp/lm --max_batches 16 --json out.json   # first 16 test batches
  python -m experiments.evaluate --workdir /tmp/mf --baselines configs/baselines/multifashion.json

Baselines are either `task=WORKDIR` pairs of single-task runs (their results.json is read, or their latest
checkpoint evaluated) or a JSON file {task: main-metric value}.
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from mtl import evaluate as evaluate_lib
from mtl.train.baselines import load_and_evaluate, read_baselines

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of the run to evaluate.")
_SPLIT = flags.DEFINE_string("split", "test", "Data split to evaluate on.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", None, "Evaluate the first N batches of the split only "
                                    "(default: all of it).")
_BASELINES = flags.DEFINE_string("baselines", None, "task=WORKDIR,... or a JSON file {task: value}.")
_JSON = flags.DEFINE_string("json", None, "Write {metrics, delta_m} to this JSON file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  metrics, exp = load_and_evaluate(_WORKDIR.value, _SPLIT.value, _STEP.value, _MAX_BATCHES.value)
  first = f" (first {_MAX_BATCHES.value} batches)" if _MAX_BATCHES.value else ""
  print(f"{exp.config.dataset.name} / {_SPLIT.value}{first}:")
  print(evaluate_lib.format_table(metrics))
  result = {"metrics": metrics, "max_batches": _MAX_BATCHES.value or "all"}
  if _BASELINES.value:
    baselines = read_baselines(_BASELINES.value, _SPLIT.value)
    main_m = evaluate_lib.main_metrics(metrics, exp.tasks)
    dm = evaluate_lib.delta_m(main_m, baselines, {t.name: t.higher_is_better for t in exp.tasks})
    result.update(baselines=baselines, delta_m=dm)
    print(f"delta-m vs single-task baselines {baselines}: {dm:+.2f}%")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
