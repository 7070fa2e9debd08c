r"""MMoE's synthetic benchmark (Ma et al. 2018, section 4) and Yeast for the tabular task-expert models.

  nice -n 5 python -m experiments.bench_towers --json docs/towers.json --plot docs/towers.png \
      --archs shared_bottom,mmoe,cgc,ple,adatt,home --correlations 1.0,0.9,0.5 --seeds 0,1,2 \
      --steps 5000 --eval_every 1000 --yeast_steps 600

Synthetic: for every correlation p and seed s the data are drawn afresh by the paper's recipe
(`mtl.data.builders.mmoe_synthetic.generate(p, seed=SEED + s)`: new task weights, sine parameters and inputs;
10,000 train / 2,000 test examples) and the model is initialised with seed s, as in the paper's repeated runs.
Models and optimisation are those of `configs/towers_synthetic.py:arch=<arch>,correlation=<p>` (Adam 1e-3,
cosine decay, batch 128), trained with the project's train step (`mtl.train.step.make_train_step`, equal task
weights) on in-memory arrays: the 9 runs (3 correlations x 3 seeds) of one arch train side by side under
`jax.vmap`, `--eval_every` steps at a time under `lax.scan`. Reported: test MSE averaged over the two tasks,
final and along training.

Yeast: `configs/towers_yeast.py:arch=<arch>` (600 steps, batch 64, Adam 1e-3) on the built Yeast splits, the same
way; reported: mean test accuracy over the 14 tasks and delta-m against the shared bottom (%, > 0 is better).

Prints a table per benchmark and writes JSON (and a plot with --plot).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from mtl import tasks as tasks_lib
from mtl.data.builders import mmoe_synthetic
from mtl.models.multitask import build_model
from mtl.optim import get_method
from mtl.train.loop import init_state_fn
from mtl.train.optimizer import build_optimizer
from mtl.train.state import param_count
from mtl.train.step import make_eval_step, make_train_step


def train_seeds(config, tasks, data: list[dict], seeds: list[int], eval_every: int) -> dict:
  """Trains one model per seed on its own arrays, side by side; returns per-seed test metrics and curves.

  data[i]: {'train': {key: array [N, ...]}, 'test': {...}} for seed i (same N for all seeds).
  """
  model = build_model(config.model, tasks, tuple(data[0]["train"]["features"].shape[1:]))
  tx = build_optimizer(config.optimizer, config.num_steps)
  method = get_method(config.mtl.method, len(tasks))
  shape = tuple(data[0]["train"]["features"].shape[1:])
  # One compiled init for all runs (the seed is traced): what init_state(model, tx, method, shape, s) gives each.
  state = jax.jit(jax.vmap(lambda s: nn.meta.unbox(init_state_fn(model, tx, method, shape, s)())))(
      jnp.asarray(seeds, jnp.int32))
  train = {k: jnp.stack([d["train"][k] for d in data]) for k in data[0]["train"]}
  test = {k: jnp.stack([d["test"][k] for d in data]) for k in data[0]["test"]}
  n, bs = train["features"].shape[1], config.batch_size
  step = make_train_step(model, tasks, tx, method, "features")
  evaluate = make_eval_step(model, tasks, "features")

  # The data are arguments, not closed-over constants: XLA would constant-fold them into the program (minutes
  # of compilation for [9, 10000, 100] inputs).
  @jax.jit
  def chunk(state, idx, train):  # idx [steps, S, B]
    def body(st, i):
      batch = jax.tree.map(lambda a: jax.vmap(lambda a_s, i_s: a_s[i_s])(a, i), train)
      st, metrics = jax.vmap(step)(st, batch)
      return st, metrics["scalars"]["loss"]
    return jax.lax.scan(body, state, idx)

  @jax.jit
  def test_stats(state, test):
    return jax.vmap(lambda p, ms, b: evaluate(p, ms, b))(state.params, state.model_state, test)

  def finalize(stats, i):
    return {t.name: tasks_lib.get_kind(t.kind).finalize(jax.tree.map(lambda a: np.asarray(a)[i], stats[t.name]))
            for t in tasks}

  rngs = [np.random.default_rng(1000 + s) for s in seeds]
  curve, losses, chunk_seconds, done = [], [], [], 0
  t0 = time.time()
  while done < config.num_steps:
    tc = time.time()
    k = min(eval_every, config.num_steps - done)
    idx = np.stack([np.stack([r.integers(0, n, bs) for r in rngs]) for _ in range(k)])
    state, loss = chunk(state, jnp.asarray(idx, jnp.int32), train)
    done += k
    losses.append(np.asarray(loss).mean(0).tolist())
    stats = test_stats(state, test)
    curve.append({"step": done, "test": [finalize(stats, i) for i in range(len(seeds))]})
    chunk_seconds.append(time.time() - tc)
  seconds = time.time() - t0
  return {"params": param_count(jax.tree.map(lambda a: a[0], state.params)), "final": curve[-1]["test"], "curve": curve,
          "train_loss_per_chunk": losses, "seconds": seconds, "chunk_seconds": chunk_seconds,
          "steps_per_second_all_seeds": config.num_steps / seconds}


def _load(name: str, arg: str):
  import importlib
  return importlib.import_module(f"configs.{name}").get_config(arg)


def synthetic(archs, correlations, seeds, steps, eval_every, bar, save) -> dict:
  """Per arch, the len(correlations) * len(seeds) runs train side by side (one compilation per arch)."""
  runs = [(p, s) for p in correlations for s in seeds]
  data = []
  for p, s in runs:
    d = mmoe_synthetic.generate(p, {"train": 10_000, "test": 2_000}, seed=mmoe_synthetic.SEED + s)
    data.append({split: {"features": v["features"], "y1": v["y1"], "y2": v["y2"]} for split, v in d.items()})
  label_corr = [mmoe_synthetic.label_correlation(d["train"]) for d in data]
  out = {}
  for arch in archs:
    # The config of the first correlation: models and optimisation do not depend on the correlation.
    c = _load("towers_synthetic", f"arch={arch},correlation={correlations[0]},steps={steps}")
    r = train_seeds(c, mmoe_synthetic.TASKS, data, [s for _, s in runs], eval_every)
    for j, p in enumerate(correlations):
      sel = [i for i, (q, _) in enumerate(runs) if q == p]
      final = [r["final"][i] for i in sel]
      out[f"{p}/{arch}"] = {
          "params": r["params"], "final": final,
          "mse": [float(np.mean([f[t]["mse"] for t in ("y1", "y2")])) for f in final],
          "curve": [{"step": c_["step"], "test": [c_["test"][i] for i in sel]} for c_ in r["curve"]],
          "train_loss_per_chunk": [[chunk[i] for i in sel] for chunk in r["train_loss_per_chunk"]],
          "label_correlation": [label_corr[i] for i in sel],
          "seconds_all_correlations": r["seconds"], "chunk_seconds_all_correlations": r["chunk_seconds"]}
    bar.update(1)
    bar.set_postfix_str(f"{arch} mse=" + "/".join(f"{np.mean(out[f'{p}/{arch}']['mse']):.3f}" for p in correlations))
    save(out)
  return out


def yeast_arrays() -> dict:
  from mtl.data.build import data_sources
  from mtl.data.builders import yeast
  src = data_sources("yeast")
  out = {}
  for split in ("train", "test"):
    recs = [src[split][i] for i in range(len(src[split]))]
    stacked = {k: np.stack([r[k] for r in recs]) for k in recs[0]}
    out[split] = yeast.collate(stacked, yeast.TASKS)
  return out


def yeast_runs(archs, seeds, steps, bar, save) -> dict:
  from mtl.data.builders import yeast
  arrays = yeast_arrays()
  data = [arrays] * len(seeds)
  out = {}
  for arch in archs:
    c = _load("towers_yeast", f"arch={arch}")
    c.num_steps = steps
    r = train_seeds(c, yeast.TASKS, data, seeds, steps)
    r["accuracy"] = [[f[t.name]["accuracy"] for t in yeast.TASKS] for f in r["final"]]
    out[arch] = r
    bar.update(1)
    bar.set_postfix_str(f"yeast {arch} acc={np.mean(r['accuracy']):.4f}")
    save(out)
  base = np.mean(np.asarray(out[archs[0]]["accuracy"]), axis=0)  # [T], mean over seeds
  for arch in archs:
    acc = np.asarray(out[arch]["accuracy"])  # [S, T]
    out[arch]["delta_m_vs_" + archs[0]] = [float(100 * np.mean((a - base) / base)) for a in acc]
  return out


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  syn, corrs = result["synthetic"], result["correlations"]
  archs = [a for a in result["archs"] if all(f"{p}/{a}" in syn for p in corrs)]
  fig, axes = plt.subplots(1, len(corrs) + 1, figsize=(4.2 * (len(corrs) + 1), 3.6))
  for arch in archs:
    m = [np.mean(syn[f"{p}/{arch}"]["mse"]) for p in corrs]
    s = [np.std(syn[f"{p}/{arch}"]["mse"]) for p in corrs]
    axes[0].errorbar(corrs, m, yerr=s, marker="o", capsize=3, label=arch)
  axes[0].set_xlabel("task correlation p (cos of task weights)")
  axes[0].set_ylabel("test MSE, mean of 2 tasks")
  axes[0].set_title(f"final, mean ± std over {len(result['seeds'])} seeds")
  axes[0].invert_xaxis()
  axes[0].legend(fontsize=7)
  for ax, p in zip(axes[1:], corrs):
    for arch in archs:
      r = syn[f"{p}/{arch}"]
      steps = [c["step"] for c in r["curve"]]
      mse = [np.mean([np.mean([f[t]["mse"] for t in ("y1", "y2")]) for f in c["test"]]) for c in r["curve"]]
      ax.plot(steps, mse, label=arch)
    ax.set_yscale("log")
    ax.set_title(f"p = {p}: test MSE during training")
    ax.set_xlabel("step")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--archs", default="shared_bottom,mmoe,cgc,ple,adatt,home")
  ap.add_argument("--correlations", default="1.0,0.9,0.5")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--steps", type=int, default=5000)
  ap.add_argument("--eval_every", type=int, default=1000)
  ap.add_argument("--yeast_steps", type=int, default=600, help="0 skips Yeast")
  ap.add_argument("--json", required=True)
  ap.add_argument("--plot", default="")
  ap.add_argument("--skip_synthetic", action="store_true", help="run only the Yeast part")
  ap.add_argument("--report_only", action="store_true",
                  help="only print the tables and draw the plot of an existing --json (e.g. a run cut off early)")
  args = ap.parse_args(argv)
  if args.report_only:
    with open(args.json) as f:
      result = json.load(f)
    if args.plot and result.get("synthetic"):
      plot(result, args.plot)
    print(format_tables(result))
    return 0
  archs = [a for a in args.archs.split(",") if a]
  corrs = [float(p) for p in args.correlations.split(",") if p]
  seeds = [int(s) for s in args.seeds.split(",") if s]
  if not archs or not corrs or not seeds or args.steps < 1 or args.eval_every < 1:
    raise SystemExit("need archs, correlations, seeds, steps >= 1 and eval_every >= 1")
  t0 = time.time()
  total = len(archs) * ((0 if args.skip_synthetic else 1) + (1 if args.yeast_steps else 0))
  result = {"command": " ".join([os.path.basename(sys.executable), "-m", "experiments.bench_towers"]
                                 + (sys.argv[1:] if argv is None else list(argv))),
            "archs": archs, "correlations": corrs, "seeds": seeds, "steps": args.steps,
            "yeast_steps": args.yeast_steps, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                                        f"jax {jax.__version__} {jax.default_backend()}"}
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)

  def save(part: str):
    def write(value):  # after every arch, so a cut-off run keeps what it finished
      result[part] = value
      result["wall_seconds"] = time.time() - t0
      with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    return write

  with tqdm(total=total, desc="runs") as bar:
    if not args.skip_synthetic:
      synthetic(archs, corrs, seeds, args.steps, args.eval_every, bar, save("synthetic"))
    if args.yeast_steps:
      yeast_runs(archs, seeds, args.yeast_steps, bar, save("yeast"))
  if args.plot and result.get("synthetic"):
    plot(result, args.plot)
  print(format_tables(result))
  return 0


def format_tables(result: dict) -> str:
  corrs, syn = result["correlations"], result.get("synthetic", {})
  archs = [a for a in result["archs"] if all(f"{p}/{a}" in syn for p in corrs)]  # finished ones
  lines = [] if not archs else [f"Synthetic (Ma et al. 2018): test MSE, mean of the 2 tasks, mean ± std over seeds "
           f"{result['seeds']}, {result['steps']} steps", "",
           "| arch | params | " + " | ".join(f"p={p}" for p in corrs) + " | gap to shared bottom, " +
           " / ".join(f"p={p}" for p in corrs) + " |",
           "|---|---:|" + "---:|" * len(corrs) + "---:|"]
  base = {p: np.mean(syn[f"{p}/{archs[0]}"]["mse"]) for p in corrs} if archs else {}
  for arch in archs:
    cells = [f"{np.mean(syn[f'{p}/{arch}']['mse']):.4f} ± {np.std(syn[f'{p}/{arch}']['mse']):.4f}" for p in corrs]
    gaps = " / ".join(f"{base[p] - np.mean(syn[f'{p}/{arch}']['mse']):+.4f}" for p in corrs)
    lines.append(f"| {arch} | {syn[f'{corrs[0]}/{arch}']['params']:,} | " + " | ".join(cells) + f" | {gaps} |")
  lc = {p: np.mean(syn[f"{p}/{archs[0]}"]["label_correlation"]) for p in corrs} if archs else {}
  if archs:
    lines += ["", "Pearson correlation of the train labels: " + ", ".join(f"p={p}: {v:.3f}" for p, v in lc.items())]
  if "yeast" in result:
    y = result["yeast"]
    archs = [a for a in result["archs"] if a in y]
    base = np.mean(np.asarray(y[archs[0]]["accuracy"]), axis=0)  # [T], mean over seeds
    lines += ["", f"Yeast: mean test accuracy over 14 tasks, {result['yeast_steps']} steps, seeds {result['seeds']}",
              "", f"| arch | params | accuracy | delta-m vs {archs[0]} (%) |", "|---|---:|---:|---:|"]
    for arch in archs:
      acc = np.asarray(y[arch]["accuracy"])  # [S, T]
      dm = [100 * np.mean((a - base) / base) for a in acc]
      lines.append(f"| {arch} | {y[arch]['params']:,} | {acc.mean(1).mean():.4f} ± {acc.mean(1).std():.4f} | "
                   f"{np.mean(dm):+.2f} ± {np.std(dm):.2f} |")
  lines.append(f"\nwall time {result['wall_seconds']:.0f} s on {result['machine']}")
  if archs != result["archs"]:
    lines.append(f"unfinished (not in the tables): {sorted(set(result['archs']) - set(archs))}")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
