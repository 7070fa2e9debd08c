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
