r"""Expert activation of Multi-Head MoE vs MoEMLP at equal MACs, on trained Yeast models (Wu et al. 2024, Fig. 1).

  nice -n 5 python -m experiments.bench_mh_moe --workdir /tmp/bench_mh_moe --json docs/mh_moe_yeast.json \
      --configs "configs/moe_yeast.py;configs/moe_yeast.py:heads=4" --seed 0

Each config is trained (or a finished run in <workdir>/<name> reused) with `mtl.train.loop.train_and_evaluate`,
exactly as `experiments.train --config <spec>` would. On the 917 test samples (one token each) it then measures,
per MoE layer, the fraction of the E experts that receive at least one routing assignment (before capacity
drops, eval capacity factor): per single token (each sample routed alone: MoEMLP sends it to exactly k experts,
MH-MoE's h sub-tokens to up to h * k), per batch of `--batch` samples, and over the whole test set.
Also reported: parameters, MACs of one MoE layer per token (`moe_layer_macs` / `mh_moe_layer_macs`) and the mean
test accuracy over the 14 tasks. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments.bench_experts import load_config, run_name
from mtl.nn.mh_moe import mh_moe_layer_macs
from mtl.nn.moe_experts import moe_layer_macs
from mtl.train import loop
from mtl.train.state import param_count


def _loads(model, params, x) -> dict[str, np.ndarray]:
  """MoE layer path -> expert loads [E] of one call on x (one routing group)."""
  _, state = model.apply({"params": params}, x, train=False, mutable=["metrics"])
  flat = jax.tree_util.tree_flatten_with_path(state["metrics"])[0]
  layers: dict[str, dict[int, jnp.ndarray]] = {}
  for path, v in flat:
    key = jax.tree_util.keystr(path)
    if "expert_load_" in key:
      layer, e = key.split("moe/expert_load_")[0], int(key.split("expert_load_")[1].split("'")[0])
      layers.setdefault(layer, {})[e] = v
  return {k: jnp.stack([d[e] for e in sorted(d)]) for k, d in layers.items()}


def activation(model, params, x: np.ndarray, batch: int) -> dict[str, dict[str, float]]:
  """Per MoE layer: mean fraction of experts with load > 0 per token, per batch of `batch`, on all of x.

  Runs the einsum-dispatch implementation (`moe_impl='dense'`: same parameters, same routing; ragged_dot has
  no batching rule for the vmap over tokens / batches).
  """
  model = model.clone(moe_impl="dense")
  per_token = jax.jit(jax.vmap(lambda xi: _loads(model, params, xi[None])))(jnp.asarray(x))
  n = (len(x) // batch) * batch
  per_batch = jax.jit(jax.vmap(lambda xb: _loads(model, params, xb)))(jnp.asarray(x[:n]).reshape(-1, batch,
                                                                                                   x.shape[-1]))
  whole = jax.jit(lambda xa: _loads(model, params, xa))(jnp.asarray(x))
  out = {}
  for layer in sorted(whole):
    out[layer] = {"token": float(np.mean(np.asarray(per_token[layer]) > 0)),
                  f"batch{batch}": float(np.mean(np.asarray(per_batch[layer]) > 0)),
                  "test_set": float(np.mean(np.asarray(whole[layer]) > 0)),
                  "test_set_load_max_over_min": float(np.max(whole[layer]) / max(float(np.min(whole[layer])), 1e-12))}
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--json", required=True)
  ap.add_argument("--configs", default="configs/moe_yeast.py;configs/moe_yeast.py:heads=4")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--steps", type=int, default=0, help="override config.num_steps (0: the config's)")
  args = ap.parse_args(argv)
  specs = [s for s in args.configs.split(";") if s]
  from experiments.bench_towers import yeast_arrays
  x_test = yeast_arrays()["test"]["features"]
  rows = {}
  for spec in tqdm(specs, desc="configs"):
    config = load_config(spec)
    config.seed = args.seed
    if args.steps:
      config.num_steps = args.steps
      config.checkpoint.every_steps = min(config.checkpoint.every_steps, args.steps)
    workdir = os.path.join(args.workdir, run_name(spec), f"seed{args.seed}")
    result = loop.train_and_evaluate(config, workdir, progress=False)
    exp, state, _ = loop.restore_experiment(workdir)
    m = config.model
    d, hidden = int(m.dim), int(m.get("moe_hidden", 0) or int(m.dim * m.mlp_ratio))
    heads = int(m.get("moe_heads", 1))
    macs = (mh_moe_layer_macs(1, d, hidden, m.num_experts, m.top_k, heads) if heads > 1 else
            moe_layer_macs(1, d, hidden, m.num_experts, m.top_k, 1, impl="ragged"))["total"]
    rows[spec] = {"params": param_count(state.params), "moe_layer_macs_per_token": macs, "heads": heads,
                  "expert_hidden": hidden, "num_experts": int(m.num_experts), "top_k": int(m.top_k),
                  "mean_test_accuracy": float(np.mean([v["accuracy"] for v in result["test"].values()])),
                  "activation": activation(exp.model, state.params, x_test, args.batch)}
  out = {"command": "python -m experiments.bench_mh_moe " + " ".join(sys.argv[1:] if argv is None else argv),
         "seed": args.seed, "batch": args.batch, "test_samples": int(len(x_test)), "configs": rows}
  with open(args.json, "w") as f:
    json.dump(out, f, indent=1)
  print(f"| config | heads | expert hidden | MoE MACs/token | params | mean acc | layer | active/token | "
        f"active/batch{args.batch} | active/test set | load max/min |")
  print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
  for spec, r in rows.items():
    for layer, a in r["activation"].items():
      print(f"| `{spec}` | {r['heads']} | {r['expert_hidden']} | {r['moe_layer_macs_per_token']:,} | {r['params']:,} | "
            f"{r['mean_test_accuracy']:.4f} | {layer} | {a['token']:.3f} | {a[f'batch{args.batch}']:.3f} | "
            f"{a['test_set']:.3f} | {a['test_set_load_max_over_min']:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
