r"""Per-step cost of the multi-task methods at small T, relative to `equal`, on one jitted train step.

  python -m experiments.bench_optim_step --tasks 3 --json docs/mtl_optim_step.json \
      [--methods mgda,upgrad,...] [--baseline_pkg /tmp/old/mtl_optim_old]

Times are CPU seconds of this process (time.process_time, all threads), which a shared, loaded machine
disturbs less than wall time. The step is a 2-layer MLP (`--dim`, `--hidden`) with T regression heads: forward,
per-task gradients (combine_gradients), Adam update, all under one jax.jit. Each method's step is timed
`--repeats` times over `--steps` steps, interleaved with `equal`, and the median is reported.
`--baseline_pkg` names a directory
holding a copy of an earlier mtl/optim (imported as a package under its directory name, its `mtl.optim`
imports rewritten to that name), timed in the same run, so before/after ratios share the machine state.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

from experiments.optim_packages import optim_packages


def _problem(t: int, dim: int, hidden: int, batch: int):
  k = jax.random.split(jax.random.PRNGKey(0), 6)
  params = {"w1": jax.random.normal(k[0], (dim, hidden)) / dim ** 0.5, "w2": jax.random.normal(k[1], (hidden, hidden))
            / hidden ** 0.5, "heads": jax.random.normal(k[2], (t, hidden)) / hidden ** 0.5}
  x = jax.random.normal(k[3], (batch, dim))
  y = jax.random.normal(k[4], (batch, t)) * jnp.logspace(0, 2, t)[None, :]  # unbalanced targets

  def task_loss_fn(p):
    h = jnp.tanh(jnp.tanh(x @ p["w1"]) @ p["w2"])
    return jnp.mean((h @ p["heads"].T - y) ** 2, axis=0), None

  return params, task_loss_fn


def _step_fn(pkg, name, t, params, task_loss_fn):
  method = pkg.get_method(name, t)
  opt = optax.adam(1e-3)

  @jax.jit
  def step(params, opt_state, mstate, i):
    grads, mstate, losses, _, _ = pkg.combine_gradients(method, mstate, task_loss_fn, params, i)
    upd, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, upd), opt_state, mstate, losses

  return step, (params, opt.init(params), method.init(params))


def _time(step, state, steps):
  params, opt_state, mstate = state
  out = step(params, opt_state, mstate, jnp.int32(0))
  jax.block_until_ready(out)
  t0 = time.process_time()  # CPU time of this process (all threads): less sensitive to other jobs than wall time
  for i in range(steps):
    params, opt_state, mstate, losses = step(params, opt_state, mstate, jnp.int32(i))
  jax.block_until_ready(losses)
  return (time.process_time() - t0) / steps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tasks", type=int, default=3)
  parser.add_argument("--methods", default="mgda,upgrad,cagrad,nash_mtl,fairgrad,imtl_g,aligned_mtl")
  parser.add_argument("--dim", type=int, default=64)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--baseline_pkg", default=None)
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  pkgs = optim_packages(args.baseline_pkg)
  params, loss_fn = _problem(args.tasks, args.dim, args.hidden, args.batch)
  methods = [m for m in args.methods.split(",") if m]
  steps = {}
  for tag, pkg in pkgs.items():
    for name in ["equal"] + methods:
      if name in pkg.known_methods():
        steps[(tag, name)] = _step_fn(pkg, name, args.tasks, params, loss_fn)
  times = {k: [] for k in steps}
  for _ in tqdm(range(args.repeats), desc="repeats"):
    for key, (fn, state) in steps.items():
      times[key].append(_time(fn, state, args.steps))
  med = {k: statistics.median(v) for k, v in times.items()}
  rows = []
  for name in methods:
    row = {"method": name}
    for tag in pkgs:
      if (tag, name) in med:
        row[f"{tag}_ms"] = 1e3 * med[(tag, name)]
        row[f"{tag}_vs_equal"] = med[(tag, name)] / med[(tag, "equal")]
    if "old_ms" in row and "new_ms" in row:
      row["new_vs_old"] = row["new_ms"] / row["old_ms"]
    rows.append(row)
  print(f"T={args.tasks}; equal: " + ", ".join(f"{tag} {1e3 * med[(tag, 'equal')]:.3f} ms" for tag in pkgs))
  print("| method | " + " | ".join(f"{tag} ms | {tag} vs equal" for tag in pkgs) + " | new vs old |")
  for r in rows:
    cells = " | ".join(f"{r.get(f'{tag}_ms', float('nan')):.3f} | {r.get(f'{tag}_vs_equal', float('nan')):.2f}x"
                       for tag in pkgs)
    print(f"| {r['method']} | {cells} | {r.get('new_vs_old', float('nan')):.2f}x |")
  out = {"command": "python -m experiments.bench_optim_step " + " ".join(argv if argv is not None else sys.argv[1:]),
         "device": f"{jax.devices()[0].device_kind}", "tasks": args.tasks,
         "equal_ms": {tag: 1e3 * med[(tag, "equal")] for tag in pkgs}, "rows": rows}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == "__main__":
  main()
