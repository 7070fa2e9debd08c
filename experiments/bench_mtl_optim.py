r"""Benchmark of every multi-task method (mtl.optim) on MultiFashion and Yeast through the real training loop.

  python -m experiments.bench_mtl_optim --workdir /tmp/bench_mtl --json docs/mtl_optim.json \
      --markdown docs/mtl_optim.md [--datasets yeast,multifashion] [--methods all|equal,pcgrad,...] \
      [--seeds 0,1 | "yeast=0,1,2;multifashion=0"] [--num_steps N | "multifashion=300"]

For each dataset, method and seed it trains `configs/<dataset>.py` with `config.mtl.method=<method>` (the same as
`python -m experiments.train --config configs/<dataset>.py --workdir D --config.mtl.method=<method>`) and reads
the test metrics and steps/s. Reported per method: each task's main metric (mean over seeds), delta-m (%)
against equal weighting (Maninis et al.: mean signed relative change of the main metrics; positive = better
than equal) and the train-step time relative to equal. A run whose workdir already holds results.json is
reused, so an interrupted benchmark resumes. `--datasets mmoe_unbalanced` is a task pair whose losses are ~100x
apart (configs/mmoe_unbalanced.py). `--datasets synthetic` runs the in-memory test dataset (a smoke
test of this script, not a benchmark). The markdown table replaces the text between
'<!-- bench:begin -->' and '<!-- bench:end -->' in --markdown.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import time
import traceback

import jax

from mtl import data as mtl_data
from mtl import evaluate as evaluate_lib
from mtl.optim import known_methods
from mtl.train import loop

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _config(dataset: str, method: str, seed: int, num_steps: int | None):
  if dataset == "synthetic":
    from mtl.testing.train_synthetic import synthetic_config
    config = synthetic_config(num_steps or 20, every_steps=10_000)
  else:
    config = importlib.import_module(f"configs.{dataset}").get_config()
  config.mtl.method = method
  config.seed = seed
  if num_steps:
    config.num_steps = num_steps
    config.checkpoint.every_steps = max(num_steps, 1)
  return config


def run_one(dataset: str, method: str, seed: int, num_steps: int | None, workdir: str) -> dict:
  """Trains (or reuses) one run; returns {'metrics': task -> main metric, 'step_time_s': float} or {'error'}."""
  wd = os.path.join(workdir, dataset, method, f"seed{seed}")
  config = _config(dataset, method, seed, num_steps)
  try:
    result = loop.train_and_evaluate_or_reuse(config, wd)
  except Exception as e:  # a method that cannot run here is reported, the others go on
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {e}"}
  info = mtl_data.get_info(config.dataset.name)
  specs = {t.name: t for t in info.tasks}
  metrics = {name: float(m[specs[name].metric]) for name, m in result["test"].items()}
  higher = {name: bool(specs[name].higher_is_better) for name in result["test"]}
  sps = float(result.get("steps_per_second", float("nan")))
  return {"metrics": metrics, "higher_is_better": higher, "step_time_s": 1.0 / sps if sps > 0 else float("nan")}


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
  """method -> mean metrics over seeds, delta-m and relative step time against 'equal'."""
  out = {}
  for method, rs in runs.items():
    errors = [r["error"] for r in rs if "error" in r]
    if errors:
      out[method] = {"error": errors[0]}
      continue
    tasks = sorted(rs[0]["metrics"])
    out[method] = {"metrics": {t: sum(r["metrics"][t] for r in rs) / len(rs) for t in tasks},
                   "higher_is_better": rs[0]["higher_is_better"],
                   "step_time_s": sum(r["step_time_s"] for r in rs) / len(rs), "seeds": len(rs)}
  base = out.get("equal")
  for method, s in out.items():
    if "error" in s or not base or "error" in base:
      continue
    s["delta_m_vs_equal"] = evaluate_lib.delta_m(s["metrics"], base["metrics"], s["higher_is_better"])
    s["step_time_vs_equal"] = s["step_time_s"] / base["step_time_s"]
  return out


def markdown(results: dict, meta: dict) -> str:
  lines = [f"Benchmark: {meta['command']}", "",
           f"Device: {meta['device']}; steps: {meta['num_steps']}; seeds: {meta['seeds']}; "
           "delta-m and step time are relative to equal weighting (delta-m > 0: better than equal).", ""]
  for dataset, table in results.items():
    lines += [f"### {dataset}", "",
              "| method | per-task main metric | mean | delta-m vs equal (%) | step time vs equal | step time (ms) |",
              "|---|---|---|---|---|---|"]
    for method, s in table.items():
      if "error" in s:
        lines.append(f"| {method} | failed: {s['error'][:120]} | | | | |")
        continue
      mean_metric = sum(s["metrics"].values()) / len(s["metrics"])
      per_task = (" / ".join(f"{t} {v:.4f}" for t, v in s["metrics"].items()) if len(s["metrics"]) <= 4
                  else f"{len(s['metrics'])} tasks (JSON)")
      lines.append(f"| {method} | {per_task} | {mean_metric:.4f} | {s.get('delta_m_vs_equal', math.nan):+.2f} | "
                   f"{s.get('step_time_vs_equal', math.nan):.2f}x | {1e3 * s['step_time_s']:.2f} |")
    lines.append("")
  return "\n".join(lines)


def write_markdown(path: str, table: str) -> None:
  text = open(path).read() if os.path.exists(path) else f"# Multi-task optimisation benchmark\n\n{BEGIN}\n{END}\n"
  if BEGIN not in text or END not in text:
    text = text.rstrip() + f"\n\n## Benchmark\n\n{BEGIN}\n{END}\n"
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  with open(path, "w") as f:
    f.write(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def per_dataset(value: str | None, datasets: list[str]) -> dict[str, str | None]:
  """'X' (every dataset) or 'dataset=X;dataset2=Y' -> dataset -> X (None where not given)."""
  if not value:
    return {d: None for d in datasets}
  if "=" not in value:
    return {d: value for d in datasets}
  pairs = dict(part.split("=", 1) for part in value.split(";") if part)
  unknown = sorted(set(pairs) - set(datasets))
  if unknown:
    raise ValueError(f"per-dataset value {value!r} names dataset(s) {unknown} not in --datasets {datasets}")
  return {d: pairs.get(d) for d in datasets}


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--datasets", default="multifashion,yeast")
  parser.add_argument("--methods", default="all")
  parser.add_argument("--seeds", default="0", help="'0,1' for every dataset, or 'yeast=0,1,2;multifashion=0'")
  parser.add_argument("--num_steps", default=None,
                      help="override the configs' num_steps: N, or 'dataset=N;dataset2=M'")
  parser.add_argument("--json", default=None)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args(argv)
  methods = list(known_methods()) if args.methods == "all" else [m for m in args.methods.split(",") if m]
  unknown = sorted(set(methods) - set(known_methods()))
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; known: {list(known_methods())}")
  if "equal" not in methods:
    methods = ["equal"] + methods  # the reference of every relative number
  datasets = [d for d in args.datasets.split(",") if d]
  steps = {d: int(v) if v else None for d, v in per_dataset(args.num_steps, datasets).items()}
  seeds = {d: [int(x) for x in (v or "0").split(",") if x] for d, v in per_dataset(args.seeds, datasets).items()}
  results = {}
  for dataset in datasets:
    runs = {}
    for method in methods:
      t0 = time.time()
      runs[method] = [run_one(dataset, method, seed, steps[dataset], args.workdir)
                       for seed in seeds[dataset]]
      print(f"{dataset} {method}: {time.time() - t0:.0f}s {runs[method][0]}", flush=True)
    results[dataset] = summarise(runs)
  meta = {"command": "python -m experiments.bench_mtl_optim " + " ".join(argv if argv is not None else
                                                                       __import__("sys").argv[1:]),
          "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()})",
          "num_steps": {d: steps[d] or "config default" for d in datasets}, "seeds": seeds}
  table = markdown(results, meta)
  print(table)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"meta": meta, "results": results}, f, indent=2)
  if args.markdown:
    write_markdown(args.markdown, table)
  return results


if __name__ == "__main__":
  main()
