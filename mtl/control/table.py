"""The measured table behind the search: validation metrics and MACs of sampled width configurations."""
from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mtl import evaluate as evaluate_lib
from mtl.control import search as search_lib, widths as widths_lib
from mtl.control.macs import count_macs
from mtl import data as data_lib
from mtl.train import loop
from mtl.train.step import task_losses_and_stats


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


def measure_all_configs(exp, state, max_batches=None) -> list[search_lib.Measurement]:
  """Validation metrics and MACs of EVERY width configuration (W ** (T + 1)), from W * W evaluations.

  A task's output depends only on the encoder width and its own head width (each head reads the shared
  features alone), so evaluating the W * W uniform-head configurations (encoder e, every head at h) measures
  every (encoder width, head width) pair of every task at once; each configuration's metrics are assembled
  from its pairs (exact: tests/control/test_table_and_baselines.py checks assembled against direct rows). The
  head widths are applied as hidden-unit masks (equal to slicing, tests/control/test_masked_heads.py), so there
  is one compilation per encoder width, not per configuration.
  """
  names = [t.name for t in exp.tasks]
  if not hasattr(exp.model, "head_mask_tables") or sorted(exp.model.heads) != sorted(names):
    raise ValueError(f"{type(exp.model).__name__} has no per-task maskable heads; measure sampled configurations "
                     "with measure_table instead")
  widths = tuple(sorted(float(w) for w in exp.config.control.widths))
  tables = {t: jnp.asarray(m) for t, m in exp.model.head_mask_tables(widths).items()}
  cfg = exp.config
  bs = cfg.get("eval_batch_size", cfg.batch_size)
  split = cfg.dataset.get("eval_split", "validation")
  pairs = {}
  for e in widths:
    def stats(params, model_state, batch, masks, e=e):
      outputs = exp.model.apply({"params": params, **model_state}, batch[exp.info.input_key], train=False,
                                encoder_width=e, head_masks=masks)
      return task_losses_and_stats(outputs, batch, exp.tasks)[1]
    jitted = jax.jit(stats)
    for i, h in enumerate(widths):
      loader = data_lib.make_loader(cfg.dataset.name, split, batch_size=bs, seed=cfg.seed, shuffle=False,
                                    num_epochs=1, drop_remainder=False, data_dir=cfg.dataset.get("data_dir") or None,
                                    tasks=names)
      masks = {t: tables[t][i] for t in names}
      batches = itertools.islice(loader, max_batches)
      metrics = evaluate_lib.evaluate_stats(
          lambda b: jitted(state.params, state.model_state, {k: jnp.asarray(v) for k, v in b.items()}, masks),
          batches, bs, exp.tasks)
      main = evaluate_lib.main_metrics(metrics, exp.tasks)
      for t in names:
        pairs[(t, e, h)] = float(main[t])
      logging.info("enc=%g heads=%g: %s", e, h, main)
  shape = tuple(exp.info.input_shape)
  return [search_lib.Measurement(c, int(count_macs(exp.model, c, shape)["total"]),
                                 {t: pairs[(t, c.encoder, w)] for t, w in c.heads})
          for c in widths_lib.all_configs(widths, names)]


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
  """The cached table of <workdir> if it was measured at `step` with the same settings, else measured now.

  num_configs <= 0 (or >= W ** (T + 1)): every configuration (`measure_all_configs`); else `num_configs`
  sampled ones (`sampled_configs`)."""
  cached = read_cached_table(workdir)
  if (cached and cached.get("step") == step and cached.get("num_configs") == num_configs
      and cached.get("max_batches") == max_batches):
    return [search_lib.Measurement(widths_lib.parse_config(r["config"]), r["macs"], r["metrics"])
            for r in cached["table"]]
  total = len(control_widths(workdir, exp)) ** (len(exp.tasks) + 1)
  if num_configs <= 0 or num_configs >= total:
    table = measure_all_configs(exp, state, max_batches)
  else:
    table = measure_table(exp, state, sampled_configs(workdir, exp, num_configs), max_batches)
  with open(os.path.join(workdir, TABLE_FILE), "w") as f:
    json.dump({"step": step, "num_configs": num_configs, "max_batches": max_batches,
               "table": [m.to_json() for m in table]}, f, indent=1)
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
