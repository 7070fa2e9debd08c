r"""Timed decode attention over ragged KV caches: Lean Attention vs fixed split-k vs jax's kernel (GPU).

  python -m experiments.bench_lean_decode --json OUT [--group 4] [--head_dim 128] [--dtype bfloat16]
      [--k_splits 1,4,16] [--block_k 64] [--programs 0] [--iters 50] [--repeats 5] [--shapes all|NAME,...]
      [--smoke]

For every decode shape of `experiments.lean_balance.SHAPES` (batch, KV heads, per-sequence lengths; query
heads = group x KV heads) it builds random q [B, H, D] and caches [B, Hkv, Lmax, D] (Lmax the longest length
rounded up to block_k * 16) and times one decode step of
  lean_p<P>      kernels.lean_decode.lean_decode with P programs (--programs, 0 = default_programs()),
                 index='offsets', merge='pallas'; leanseg_p<P>: merge='segment' (jnp scatters);
                 leantile_p<P> (--tile): index='tile' (per-tile row table)
  leankernel_p<P>  (--kernel_only) the Lean Pallas call alone, schedule and merge left out
  split<k>       kernels.gqa_decode.gqa_decode with k_splits = k (every (b, kv head) gets k programs)
  jax_gqa        jax.experimental.pallas.ops.gpu.decode_attention.gqa (its own [B, L, Hkv, D] cache layout,
                 built outside the timed call; k_splits 16, its default, halved until its kernel accepts Lmax)
  reference      kernels.reference.softmax_decode_step (plain jnp)
Each time is the median over `repeats` of (wall time of one jitted fori_loop of `iters` dependent calls) /
iters, after a warm-up, compilation excluded. Every output (but leankernel's) is checked against the float32
reference on the same inputs (max abs error, in the table). GB/s counts the valid cache bytes read (K and V,
lengths not Lmax). Kernels run compiled on a GPU; on CPU they run in interpret mode (`--smoke`: tiny lengths, a
check that the script works, not a benchmark). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import tqdm
from jax import lax

from experiments.lean_balance import SHAPES
from kernels import reference as kref
from kernels.gqa_decode import gqa_decode
from kernels.lean_decode import default_programs, lean_decode, lean_partials, lean_schedule

SMOKE_SHAPES = {"b2 h2 100/37 (smoke)": (2, 2, [100, 37]), "b1 h1 64 (smoke)": (1, 1, [64])}


def time_call(fn, args, iters: int, repeats: int) -> tuple[float, float]:
  """(median seconds per call, compile seconds) of `fn(q, k, v, n)`, `iters` calls in one jitted fori_loop.

  Each call's q depends on the previous call's output (q + 1e-6 * o), so XLA can neither hoist nor drop a
  call, and the per-call time excludes Python dispatch (a decode step on a GPU is tens of microseconds,
  the same order as dispatching a jitted call).
  """
  def loop(q, *rest):
    def body(_, q):
      o = fn(q, *rest)
      return (q.astype(jnp.float32) + 1e-6 * o[..., :q.shape[-1]].astype(jnp.float32)).astype(q.dtype)
    return lax.fori_loop(0, iters, body, q)
  t0 = time.perf_counter()
  compiled = jax.jit(loop).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append((time.perf_counter() - t0) / iters)
  return statistics.median(times), compile_s


def jax_k_splits(lmax: int, block_k: int = 128) -> int:
  """The largest of jax's default k_splits (16) and its halves that its kernel accepts for `lmax`."""
  ks = 16
  while ks > 1 and lmax % (ks * block_k):
    ks //= 2
  return ks


def impls(args, lmax: int, on_gpu: bool) -> dict:
  interp = not on_gpu
  fns = {}
  variants = [("offsets", "pallas", "lean"), ("offsets", "segment", "leanseg")]
  if args.tile:
    variants.append(("tile", "pallas", "leantile"))
  for p in args.programs:
    for index, merge, tag in variants:
      fns[f"{tag}_p{p}"] = (lambda p, index, merge: lambda q, k, v, n: lean_decode(
          q, k, v, n, block_k=args.block_k, num_programs=p, interpret=interp, index=index, merge=merge))(
              p, index, merge)
  if args.kernel_only:
    # The Pallas call alone (schedule computed and merge left out): what the jnp schedule and merge cost is
    # lean - leankernel. The returned value (a sum over the segments' maxima) only chains the loop.
    p = args.programs[0]
    def kernel_only(q, k, v, n):
      sched = lean_schedule(n, k.shape[1], args.block_k, p)
      sched = jax.tree.map(lax.optimization_barrier, sched)
      _, m, _, _ = lean_partials(q, k, v, sched, q.shape[-1] ** -0.5, args.block_k, p, interp)
      return jnp.broadcast_to(jnp.max(m), q.shape)
    fns[f"leankernel_p{p}"] = kernel_only
  for ks in args.k_splits:
    if lmax % (args.block_k * ks) == 0:
      fns[f"split{ks}"] = (lambda ks: lambda q, k, v, n: gqa_decode(
          q, k, v, n, block_k=args.block_k, k_splits=ks, interpret=interp))(ks)
  if on_gpu:
    from jax.experimental.pallas.ops.gpu import decode_attention  # pylint: disable=g-import-not-at-top
    fns["jax_gqa"] = lambda q, kt, vt, n: decode_attention.gqa(
        q, kt, vt, kv_seq_len=n, sm_scale=q.shape[-1] ** -0.5, k_splits=jax_k_splits(kt.shape[1]))
  fns["reference"] = kref.softmax_decode_step
  return fns


def main(argv: list[str] | None = None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--json", required=True)
  ap.add_argument("--group", type=int, default=4, help="query heads per KV head")
  ap.add_argument("--head_dim", type=int, default=128)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--k_splits", default="1,4,16")
  ap.add_argument("--block_k", type=int, default=64)
  ap.add_argument("--programs", default="0", help="Lean program counts, e.g. 132,528; 0 = default_programs()")
  ap.add_argument("--iters", type=int, default=20, help="calls per timed jitted loop")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--shapes", default="all")
  ap.add_argument("--tile", action="store_true", help="also time index='tile' (leantile_p<P>)")
  ap.add_argument("--kernel_only", action="store_true",
                  help="also time the Lean Pallas call alone (leankernel_p<P>, the first --programs)")
  ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU interpret-mode check)")
  a = ap.parse_args(argv)
  a.k_splits = [int(x) for x in a.k_splits.split(",") if x]
  a.programs = [int(x) or default_programs() for x in a.programs.split(",") if x]
  if a.group <= 0 or a.head_dim <= 0 or a.block_k <= 0 or a.iters <= 0 or a.repeats <= 0:
    raise ValueError("--group, --head_dim, --block_k, --iters and --repeats must be positive")
  shapes = SMOKE_SHAPES if a.smoke else SHAPES
  if a.shapes != "all":
    unknown = [s for s in a.shapes.split(",") if s not in shapes]
    if unknown:
      raise ValueError(f"unknown shape(s) {unknown}; known: {list(shapes)}")
    shapes = {s: shapes[s] for s in a.shapes.split(",")}
  on_gpu = jax.default_backend() == "gpu"
  dtype = jnp.dtype(a.dtype)
  rows = []
  for name, (b, hkv, lengths) in tqdm.tqdm(shapes.items(), desc="shapes", file=sys.stderr):
    lmax = -(-max(lengths) // (a.block_k * 16)) * a.block_k * 16
    h, d = a.group * hkv, a.head_dim
    ks = jax.random.split(jax.random.key(b * 1000 + hkv), 3)
    q = jax.random.normal(ks[0], (b, h, d), jnp.float32).astype(dtype)
    kc = jax.random.normal(ks[1], (b, hkv, lmax, d), jnp.float32).astype(dtype)
    vc = jax.random.normal(ks[2], (b, hkv, lmax, d), jnp.float32).astype(dtype)
    n = jnp.asarray(lengths, jnp.int32)
    want = kref.softmax_decode_step(q.astype(jnp.float32), kc.astype(jnp.float32), vc.astype(jnp.float32), n)
    kt, vt = jnp.swapaxes(kc, 1, 2), jnp.swapaxes(vc, 1, 2)
    read_bytes = 2 * hkv * d * dtype.itemsize * sum(lengths)
    for impl, fn in impls(a, lmax, on_gpu).items():
      fargs = (q, kt, vt, n) if impl == "jax_gqa" else (q, kc, vc, n)
      row = {"shape": name, "impl": impl, "batch": b, "heads": h, "kv_heads": hkv, "head_dim": d,
             "lengths": lengths, "lmax": lmax, "dtype": dtype.name, "block_k": a.block_k,
             "programs": int(impl.split("_p")[1]) if impl.startswith("lean") else None}
      try:
        sec, comp = time_call(fn, fargs, a.iters, a.repeats)
        err = (None if impl.startswith("leankernel") else
               float(jnp.max(jnp.abs(jax.jit(fn)(*fargs).astype(jnp.float32) - want))))
        row.update(seconds=sec, compile_s=comp, max_abs_err=err, gb_per_s=read_bytes / sec / 1e9)
      except Exception as e:  # pylint: disable=broad-except  (a kernel that fails on a shape is reported)
        row["error"] = f"{type(e).__name__}: {str(e)[:400]}"
      rows.append(row)
      with open(a.json, "w") as f:
        json.dump({"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                   "jax": jax.__version__, "host": platform.node(), "args": vars(a), "rows": rows}, f, indent=1)
      tqdm.tqdm.write(f"{name:>24} {impl:>10} " + (
          f"{row['seconds'] * 1e6:9.1f} us {row['gb_per_s']:8.1f} GB/s err {row['max_abs_err'] or 0:.1e}"
          if "error" not in row else f"FAILED {row['error'][:160]}"))
  print(summary(rows))
  return rows


def summary(rows: list[dict]) -> str:
  """Markdown table: microseconds per step per shape, and the best Lean's speed-up over the best fixed split."""
  names = list(dict.fromkeys(r["impl"] for r in rows))
  lines = ["| shape | " + " | ".join(f"{n} (us)" for n in names) + " | lean vs best split |",
           "|---" * (len(names) + 2) + "|"]
  for shape in dict.fromkeys(r["shape"] for r in rows):
    by = {r["impl"]: r for r in rows if r["shape"] == shape}
    cell = lambda r: f"{r['seconds'] * 1e6:.1f}" if r and "seconds" in r else "failed"
    splits = [r["seconds"] for k, r in by.items() if k.startswith("split") and "seconds" in r]
    leans = [r["seconds"] for k, r in by.items()
             if k.startswith("lean") and not k.startswith("leankernel") and "seconds" in r]
    ratio = f"{min(splits) / min(leans):.2f}x" if splits and leans else "-"
    lines.append(f"| {shape} | " + " | ".join(cell(by.get(n)) for n in names) + f" | {ratio} |")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
