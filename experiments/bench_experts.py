r"""Mixture-of-experts and TaskExpert models against a dense shared encoder, through the real training loop.

  python -m experiments.bench_experts --workdir /tmp/bench_experts --json docs/experts_yeast.json \
      --markdown docs/experts.md --seeds 0,1 \
      --configs "configs/yeast.py;configs/moe_yeast.py:moe_every=0;configs/moe_yeast.py;\
configs/moe_yeast.py:router=task;configs/moe_yeast.py:variant=taskexpert"

Each entry of --configs is `configs/<name>.py[:arg]`, exactly as given to `experiments.train --config`; the first
is the baseline. For every config and seed it trains (or reuses a finished run in
<workdir>/<name>[_<arg>]/seed<s>), then reports per config: parameter count, each task's main test metric (mean
over seeds), delta-m against the baseline (%, Maninis et al.; > 0 is better), train steps/s, and from the last
logged train step the expert utilisation: per MoE layer (and task router) the max/min ratio of expert loads,
the dropped-assignment fraction, and for TaskExpert the mean gate weight of the task memory. The markdown table
replaces the text between '<!-- experts:begin -->' and '<!-- experts:end -->' of --markdown.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import traceback

import jax
import numpy as np

from mtl import data as mtl_data
from mtl import evaluate as evaluate_lib
from mtl.train import loop

BEGIN, END = "<!-- experts:begin -->", "<!-- experts:end -->"


def load_config(spec: str):
  """'configs/<name>.py[:arg]' -> the config `experiments.train --config <spec>` would use."""
  path, _, arg = spec.partition(":")
  m = re.fullmatch(r"configs/(\w+)\.py", path)
  if not m:
    raise ValueError(f"config spec {spec!r} must look like 'configs/<name>.py[:arg]'")
  module = importlib.import_module(f"configs.{m.group(1)}")
  return module.get_config(arg or None)


def run_name(spec: str) -> str:
  path, _, arg = spec.partition(":")
  name = os.path.basename(path)[:-3]
  return name + ("_" + re.sub(r"[^\w.=+-]", "_", arg).replace("=", "-") if arg else "")


def last_train_metrics(workdir: str) -> dict[str, float]:
  """The last 'train' record of <workdir>/metrics.jsonl (empty if none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  last = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        if record.get("split") == "train":
          last = record
  return last


def utilisation(train_metrics: dict[str, float]) -> dict[str, float]:
  """Expert-load balance (max/min per layer and router), drop fraction and TaskExpert memory gate weight."""
  loads: dict[str, list[float]] = {}
  drops, memory = [], []
  for key, value in train_metrics.items():
    m = re.fullmatch(r"(.*)expert_load_(\d+)", key)
    if m:
      loads.setdefault(m.group(1), []).append(float(value))
    elif key.endswith("drop_fraction"):
      drops.append(float(value))
    elif key.endswith("gate_memory"):
      memory.append(float(value))
  out = {}
  if loads:
    ratios = [max(v) / max(min(v), 1e-9) for v in loads.values()]
    out.update(max_min_load_ratio=float(max(ratios)), median_max_min_load_ratio=float(np.median(ratios)),
               moe_routers=len(loads))
  if drops:
    out["drop_fraction"] = float(np.mean(drops))
  if memory:
    out["memory_gate"] = float(np.mean(memory))
  return out


def run_one(spec: str, seed: int, num_steps: int | None, workdir: str) -> dict:
  config = load_config(spec)
  config.seed = seed
  if num_steps:
    config.num_steps = num_steps
    config.eval_every = min(config.eval_every, num_steps)
    config.checkpoint.every_steps = num_steps
  wd = os.path.join(workdir, run_name(spec), f"seed{seed}")
  try:
    result = loop.train_and_evaluate_or_reuse(config, wd)
  except Exception as e:  # a config that cannot run here is reported, the others go on
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {e}"}
  info = mtl_data.get_info(config.dataset.name)
  specs = {t.name: t for t in info.tasks}
  params = loop.build_experiment(config, mesh=None).state.params
  return {"metrics": {n: float(m[specs[n].metric]) for n, m in result["test"].items()},
          "higher_is_better": {n: bool(specs[n].higher_is_better) for n in result["test"]},
          "steps_per_second": float(result.get("steps_per_second", math.nan)),
          "params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
          "utilisation": utilisation(last_train_metrics(wd)), "num_steps": config.num_steps}


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
  """spec -> mean metrics over seeds, delta-m vs the first spec, steps/s, params, utilisation."""
  out = {}
  for spec, rs in runs.items():
    errors = [r["error"] for r in rs if "error" in r]
    if errors:
      out[spec] = {"error": errors[0]}
      continue
    tasks = sorted(rs[0]["metrics"])
    util_keys = sorted({k for r in rs for k in r["utilisation"]})
    out[spec] = {"metrics": {t: float(np.mean([r["metrics"][t] for r in rs])) for t in tasks},
                 "metric_std": {t: float(np.std([r["metrics"][t] for r in rs])) for t in tasks},
                 "higher_is_better": rs[0]["higher_is_better"], "params": rs[0]["params"],
                 "steps_per_second": float(np.mean([r["steps_per_second"] for r in rs])),
                 "utilisation": {k: float(np.mean([r["utilisation"][k] for r in rs if k in r["utilisation"]]))
                                 for k in util_keys},
                 "seeds": len(rs), "num_steps": rs[0]["num_steps"]}
  specs = list(out)
  base = out[specs[0]] if specs else None
  for spec, s in out.items():
    if "error" in s or base is None or "error" in base:
      continue
    s["delta_m"] = evaluate_lib.delta_m(s["metrics"], base["metrics"], s["higher_is_better"])
    per_seed = [evaluate_lib.delta_m(r["metrics"], base["metrics"], r["higher_is_better"]) for r in runs[spec]]
    s["delta_m_seed_std"] = float(np.std(per_seed))
  return out


def markdown(results: dict, command: str) -> str:
  lines = [f"`{command}`", "", "delta-m is against the first row, over each task's main test metric (mean over "
           "seeds; ± is the std over seeds of per-seed delta-m against the baseline mean). Load ratio: max/min "
           "expert load in the most unbalanced MoE layer (median over layers and routers in brackets).", "",
           "| config | params | mean metric | delta-m (%) | steps/s | expert load max/min | dropped | memory gate |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for spec, s in results.items():
    if "error" in s:
      lines.append(f"| `{spec}` | failed: {s['error'][:120]} | | | | | | |")
      continue
    u = s["utilisation"]
    load = (f"{u['max_min_load_ratio']:.2f} ({u['median_max_min_load_ratio']:.2f})"
            if "max_min_load_ratio" in u else "-")
    drop = f"{100 * u['drop_fraction']:.2f}%" if "drop_fraction" in u else "-"
    mem = f"{u['memory_gate']:.3f}" if "memory_gate" in u else "-"
    mean = float(np.mean(list(s["metrics"].values())))
    lines.append(f"| `{spec}` | {s['params']:,} | {mean:.4f} | {s['delta_m']:+.2f} ± {s['delta_m_seed_std']:.2f} | "
                 f"{s['steps_per_second']:.1f} | {load} | {drop} | {mem} |")
  return "\n".join(lines)


def write_markdown(path: str, table: str) -> None:
  text = open(path).read() if os.path.exists(path) else f"# Experts benchmark\n\n{BEGIN}\n{END}\n"
  if BEGIN not in text or END not in text:
    text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  with open(path, "w") as f:
    f.write(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--configs", required=True, help="';'-separated config specs; the first is the baseline")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--num_steps", type=int, default=None, help="override every config's num_steps")
  parser.add_argument("--json", default=None)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args(argv)
  specs = [s for s in args.configs.split(";") if s]
  if len(specs) < 2:
    raise ValueError("--configs needs a baseline and at least one config to compare")
  for spec in specs:
    load_config(spec)  # bad specs fail before any training
  seeds = [int(s) for s in args.seeds.split(",") if s]
  runs = {spec: [run_one(spec, seed, args.num_steps, args.workdir) for seed in seeds] for spec in specs}
  results = summarise(runs)
  command = "python -m experiments.bench_experts " + " ".join(
      a if not a.startswith("configs/") and ";" not in a else f'"{a}"' for a in (argv or sys.argv[1:]))
  table = markdown(results, command)
  print(table)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"command": command, "device": jax.devices()[0].device_kind, "results": results,
                 "runs": runs}, f, indent=1)
  if args.markdown:
    write_markdown(args.markdown, table)
  return results


if __name__ == "__main__":
  main()
