"""Measured latency of width configurations vs their MACs ratio to full width."""
from __future__ import annotations

import time
from typing import Any, Sequence

import jax
import numpy as np
from scipy import stats

from mtl.control import macs as macs_lib
from mtl.control.widths import WidthConfig


def time_fn(fn, *args, warmup: int = 2, iters: int = 10) -> dict:
  """Wall-clock seconds of `fn(*args)` (outputs blocked on), after `warmup` calls (compilation included
  in warmup). Returns {'median_s', 'min_s', 'mean_s', 'std_s'}."""
  if iters < 1 or warmup < 0:
    raise ValueError(f"need iters >= 1 and warmup >= 0, got {iters}, {warmup}")
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  ts = np.array(ts)
  return {"median_s": float(np.median(ts)), "min_s": float(ts.min()), "mean_s": float(ts.mean()),
          "std_s": float(ts.std())}


def latency_table(model: Any, variables: Any, configs: Sequence[WidthConfig], x: jax.Array,
                  warmup: int = 2, iters: int = 10) -> dict:
  """Jitted forward latency of each config on batch `x` next to its MACs ratio to full width.

  Returns {'rows': [{'config', 'macs', 'macs_ratio', 'median_s', 'latency_ratio', ...}],
  'spearman_latency_vs_macs': rho} (latency_ratio = median / median of the full-width config).
  """
  input_shape = tuple(x.shape[1:])
  full = WidthConfig.create(1.0, {t: 1.0 for t in model.heads})
  configs = list(configs)
  if full not in configs:
    configs = [full] + configs
  rows = []
  for c in configs:
    f = jax.jit(lambda v, x, c=c: model.apply(v, x, **c.apply_kwargs()))
    rows.append({"config": c.key(), "macs": macs_lib.count_macs(model, c, input_shape)["total"],
                 **time_fn(f, variables, x, warmup=warmup, iters=iters)})
  ref = next(r for r in rows if r["config"] == full.key())
  for r in rows:
    r["macs_ratio"] = r["macs"] / ref["macs"]
    r["latency_ratio"] = r["median_s"] / ref["median_s"]
  rho = (float(stats.spearmanr([r["macs"] for r in rows], [r["median_s"] for r in rows]).statistic)
         if len(rows) > 2 else float("nan"))
  return {"batch_size": int(x.shape[0]), "rows": rows, "spearman_latency_vs_macs": rho}


def format_table(table: dict) -> str:
  """Plain-text table of `latency_table`'s rows, sorted by MACs."""
  lines = [f"{'config':<40} {'MACs':>12} {'MACs ratio':>10} {'ms':>9} {'lat ratio':>9}"]
  for r in sorted(table["rows"], key=lambda r: r["macs"]):
    lines.append(f"{r['config']:<40} {r['macs']:>12d} {r['macs_ratio']:>10.3f} {1e3 * r['median_s']:>9.3f} "
                 f"{r['latency_ratio']:>9.3f}")
  lines.append(f"Spearman(latency, MACs) = {table['spearman_latency_vs_macs']:.3f}")
  return "\n".join(lines)


def _demo_model(encoder: str, input_shape: tuple[int, ...]):
  """A MultiFashion-sized two-task model (conv / vit / mlp encoder) for the benchmark CLI."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from mtl.models.multitask import build_model  # pylint: disable=g-import-not-at-top
  from mtl.tasks.base import TaskSpec  # pylint: disable=g-import-not-at-top
  enc = {"conv": dict(name="conv", stage_channels=(64, 128, 256)),
         "vit": dict(name="vit", patch_size=4, dim=256, depth=6, num_heads=8),
         "mlp": dict(name="mlp", hidden_dims=(1024, 512))}
  if encoder not in enc:
    raise ValueError(f"unknown encoder {encoder!r}; known: {sorted(enc)}")
  cfg = ml_collections.ConfigDict(dict(name="multitask", encoder=enc[encoder], head=dict(hidden_dim=256)))
  return build_model(cfg, (TaskSpec("left", "classification", 10), TaskSpec("right", "classification", 10)),
                     input_shape)


def _demo_configs(model: Any, seed: int, num_configs: int) -> list[WidthConfig]:
  """Smallest, the uniform widths and random configurations of the demo model's width grid."""
  from mtl.control import widths as widths_lib  # pylint: disable=g-import-not-at-top
  ws, tasks = (0.25, 0.5, 0.75, 1.0), tuple(model.heads)
  gen = np.random.default_rng(seed)
  configs = [widths_lib.smallest(ws, tasks)] + [widths_lib.WidthConfig.create(w, {t: w for t in tasks})
                                                 for w in ws[1:-1]]
  while len(set(configs)) < num_configs:
    configs.append(widths_lib.random_config(gen, ws, tasks))
  return list(dict.fromkeys(configs))


def trained_model(workdir: str, num_configs: int) -> tuple[Any, Any, list[WidthConfig], tuple[int, ...]]:
  """(model, inference variables, configs, input shape) of a run trained with a control config. The configs
  are those of its control table (<workdir>/control_table.json, written by experiments.control) when there is
  one, else `num_configs` sampled from the run's width grid as experiments.control would sample them."""
  from mtl.control import table as table_lib, widths as widths_lib  # pylint: disable=g-import-not-at-top
  from mtl.train import loop  # pylint: disable=g-import-not-at-top
  exp, state, _ = loop.restore_experiment(workdir)
  table_lib.control_widths(workdir, exp)  # a run without a control config raises
  cached = table_lib.read_cached_table(workdir)
  configs = ([widths_lib.parse_config(r["config"]) for r in cached["table"]] if cached
             else table_lib.sampled_configs(workdir, exp, num_configs))
  variables = jax.device_get({"params": state.params, **state.model_state})
  return exp.model, variables, list(dict.fromkeys(configs)), tuple(exp.info.input_shape)


def main(argv=None):
  """python -m mtl.control.latency --encoder conv --batch 256 [--num_configs 12] [--json OUT]
  python -m mtl.control.latency --workdir D --batch 64 [--json OUT]   (a trained controllable run)"""
  import argparse  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  ap = argparse.ArgumentParser(description=main.__doc__)
  ap.add_argument("--encoder", default="conv", help="demo model encoder (conv, vit, mlp); ignored with --workdir")
  ap.add_argument("--workdir", default="", help="time the configurations of this trained controllable run")
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--num_configs", type=int, default=12)
  ap.add_argument("--iters", type=int, default=20)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", default="")
  a = ap.parse_args(argv)
  if a.batch < 1:
    raise ValueError(f"--batch must be >= 1, got {a.batch}")
  if a.workdir:
    model, variables, configs, shape = trained_model(a.workdir, a.num_configs)
    what = f"workdir={a.workdir}"
  else:
    shape = (36, 36, 1) if a.encoder != "mlp" else (103,)
    model = _demo_model(a.encoder, shape)
    x0 = jax.numpy.ones((1,) + shape, jax.numpy.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x0)
    rng = np.random.RandomState(a.seed)
    variables = jax.tree.map(lambda s: jax.numpy.asarray(0.05 * rng.randn(*s.shape), s.dtype), shapes)
    configs = _demo_configs(model, a.seed, a.num_configs)
    what = f"encoder={a.encoder}"
  x = jax.numpy.asarray(np.random.RandomState(a.seed).rand(a.batch, *shape), jax.numpy.float32)
  table = latency_table(model, variables, configs, x, iters=a.iters)
  table.update(source=what, device=str(jax.devices()[0].device_kind))
  print(f"{what} batch={a.batch} device={table['device']}")
  print(format_table(table))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(table, f, indent=1)


if __name__ == "__main__":
  main()
