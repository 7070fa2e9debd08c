"""The measured table behind the search: validation metrics and MACs of sampled width configurations."""
from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from mtl import evaluate as evaluate_lib
from mtl.control import search as search_lib, widths as widths_lib
from mtl.control.macs import count_macs
from mtl.train import loop


def measure_table(exp, state, configs, max_batches=None) -> list[search_lib.Measurement]:
  """Validation main metric per task and MACs per example of each width configuration."""
  table = []
  for cfg in configs:
    metrics = loop.evaluate_split(exp, state, exp.config.dataset.get("eval_split", "validation"),
                                  model_kwargs=cfg.apply_kwargs(), max_batches=max_batches)
    main = evaluate_lib.main_metrics(metrics, exp.tasks)
    macs = count_macs(exp.model, cfg, tuple(exp.info.input_shape))["total"]
    table.append(search_lib.Measurement(cfg, int(macs), main))
    logging.info("%s: %d MACs, %s", cfg.key(), macs, main)
  return table


TABLE_FILE = "control_table.json"


def control_widths(workdir: str, exp) -> tuple[float, ...]:
  """The width grid of a run trained with a control config; other runs raise (their sub-networks never trained)."""
  control = exp.config.get("control")
  if not control or not control.get("enabled", False):
    raise ValueError(f"{workdir} was not trained with a control config (config.control.enabled); "
                     "its sub-networks were never trained")
  return tuple(control.widths)


def sampled_configs(workdir: str, exp, num_configs: int) -> list[widths_lib.WidthConfig]:
  """The `num_configs` width configurations the table measures (deterministic: sampled with seed 0)."""
  names = [t.name for t in exp.tasks]
  return widths_lib.sample_configs(np.random.default_rng(0), control_widths(workdir, exp), names, num_configs)


def read_cached_table(workdir: str) -> dict | None:
  """<workdir>/control_table.json ({'step', 'num_configs', 'table': [Measurement.to_json()]}) or None."""
  path = os.path.join(workdir, TABLE_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_or_measure(workdir, exp, state, step, num_configs, max_batches) -> list[search_lib.Measurement]:
  cached = read_cached_table(workdir)
  if cached and cached.get("step") == step and cached.get("num_configs") == num_configs:
    return [search_lib.Measurement(widths_lib.parse_config(r["config"]), r["macs"], r["metrics"])
            for r in cached["table"]]
  table = measure_table(exp, state, sampled_configs(workdir, exp, num_configs), max_batches)
  with open(os.path.join(workdir, TABLE_FILE), "w") as f:
    json.dump({"step": step, "num_configs": num_configs, "table": [m.to_json() for m in table]}, f, indent=1)
  return table


def parse_preference(text: str | None, names: list[str]) -> list[float]:
  if not text:
    return [1.0] * len(names)
  try:
    pref = [float(v) for v in text.split(",")]
  except ValueError:
    raise ValueError(f"--preference must be comma-separated numbers, got {text!r}") from None
  if len(pref) != len(names):
    raise ValueError(f"--preference has {len(pref)} weights but the run has {len(names)} tasks {names}")
  return pref
