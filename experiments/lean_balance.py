"""Work balance of Lean Attention vs fixed split-k decoding, computed from the schedules (not timed).

  python -m experiments.lean_balance --json OUT [--programs 132] [--block_k 64]

For each decode shape (batch, KV heads, per-sequence lengths) the work is counted in tiles of block_k cache
rows. Fixed split-k (kernels/softmax_decode.py, kernels/gqa_decode.py): grid (B * Hkv, k_splits), a program
gets the tiles of its 1/k_splits slice of its row up to the row's length; the programs are list-scheduled in
grid order onto `programs` parallel cores (each goes to the core that frees first). Lean
(kernels/lean_decode.py, `lean_schedule`): `programs` programs with T // P or T // P + 1 tiles each.
Makespan = the busiest core's tiles; efficiency = T / (P * makespan) (1.0 = every core busy to the end).
This counts tiles only: it leaves out the per-program launch cost, the flush of Lean's extra segments and
the final merge, so it bounds what the split can buy; timing it needs a GPU.
"""
from __future__ import annotations

import argparse
import heapq
import json

import jax.numpy as jnp
import numpy as np

from kernels.lean_decode import lean_schedule

SHAPES = {  # name: (batch, kv heads, lengths)
    "b1 h8 8k": (1, 8, [8192]),
    "b1 h8 32k": (1, 8, [32768]),
    "b4 h8 8k": (4, 8, [8192] * 4),
    "b8 h4 1k..32k ragged": (8, 4, [1024] * 7 + [32768]),
    "b3 h5 5000 (awkward)": (3, 5, [5000, 777, 3]),
    "b32 h8 2k": (32, 8, [2048] * 32),
}


def fixed_split_makespan(lengths, hkv, block_k, k_splits, lmax, programs) -> int:
  split_len = lmax // k_splits
  work = []
  for n in lengths:
    for _ in range(hkv):
      for j in range(k_splits):
        rows = max(0, min(split_len, n - j * split_len))
        work.append(-(-rows // block_k))
  cores = [0] * programs
  heapq.heapify(cores)
  for w in work:
    heapq.heappush(cores, heapq.heappop(cores) + w)
  return max(cores)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--json", required=True)
  ap.add_argument("--programs", type=int, default=132, help="parallel cores (H100 SXM: 132 SMs)")
  ap.add_argument("--block_k", type=int, default=64)
  ap.add_argument("--k_splits", default="1,4,16")
  a = ap.parse_args(argv)
  rows = []
  print(f"{'shape':>24} {'tiles':>7} {'lean':>6} {'eff':>5} " + " ".join(
      f"{'split' + s:>8} {'eff':>5}" for s in a.k_splits.split(",")))
  for name, (b, hkv, lengths) in SHAPES.items():
    lmax = -(-max(lengths) // (a.block_k * 16)) * a.block_k * 16
    s = lean_schedule(jnp.array(lengths), hkv, a.block_k, a.programs)
    total = int(s["offsets"][-1])
    lean = int(np.max(np.diff(np.asarray(s["starts"]))))
    row = {"shape": name, "batch": b, "kv_heads": hkv, "lengths": lengths, "tiles": total,
           "lean_makespan": lean, "lean_efficiency": total / (a.programs * lean), "fixed": {}}
    for ks in (int(x) for x in a.k_splits.split(",")):
      m = fixed_split_makespan(lengths, hkv, a.block_k, ks, lmax, a.programs)
      row["fixed"][ks] = {"makespan": m, "efficiency": total / (a.programs * m)}
    rows.append(row)
    print(f"{name:>24} {total:>7} {lean:>6} {row['lean_efficiency']:>5.2f} " + " ".join(
        f"{v['makespan']:>8} {v['efficiency']:>5.2f}" for v in row["fixed"].values()))
  with open(a.json, "w") as f:
    json.dump({"programs": a.programs, "block_k": a.block_k, "results": rows}, f, indent=1)


if __name__ == "__main__":
  main()
