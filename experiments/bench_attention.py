"""Benchmark: lightning vs naive linear vs softmax attention (and decoding).

  python -m experiments.bench_attention --json OUT [--seq_lens 512,1024,...]

For each implementation and sequence length L (batch B, H heads, head dim D,
causal): tokens/s (B * L / median wall time of a jitted call) and peak memory
(XLA's compiled memory analysis: arguments + outputs + temporaries, bytes) of
the forward and of forward+backward (grads of sum(o) w.r.t. q, k, v).

Implementations:
  lightning_jnp     kernels.reference.lightning_attention_chunked (scan)
  lightning_jnp_two_pass  kernels.reference.lightning_attention_two_pass
                    (block states, associative scan, outputs; no loop)
  lightning_pallas  kernels.lightning_attention impl='triton_serial' (compiled,
                    GPU only), backward bwd='split'; lightning_pallas_fused:
                    bwd='fused'
  lightning_chunked impl='triton_chunked' (two-pass, GPU only), float32 inputs
                    with IEEE dots; _tf32: TF32 dots; _bf16: bfloat16 inputs
  lightning_mosaic  impl='mosaic' (TPU only), float32; _bf16: bfloat16 inputs
  linear_cumsum     kernels.reference.linear_attention_cumsum (prefix scan,
                    materialises [L, D, D] states)
  softmax_xla       jax.nn.dot_product_attention(implementation='xla')
  softmax_cudnn     jax.nn.dot_product_attention(implementation='cudnn'),
                    bfloat16 inputs (cuDNN flash attention needs 16-bit)
With --decode: one decode step over a cache of length L for
  softmax_decode_pallas (kernels.softmax_decode), softmax_decode_jax
  (jax.experimental.pallas.ops.gpu.decode_attention.gqa, GPU only),
  softmax_decode_mosaic and softmax_decode_paged (jax's TPU paged attention
  on the same cache as contiguous pages; TPU only), softmax_decode_jnp
  (reference) and linear_decode_pallas / _mosaic / _jnp (state update,
  independent of L); tokens/s = B / step time.
With --accuracy: relative L2 error of o and of the q, k, v gradients (of
sum(o * ct), ct random) against float64 numpy, per lightning kernel and input
dtype, at L=--accuracy_len; on CPU the kernels run in interpret mode (Triton:
Pallas interpret, Mosaic: TPU interpret; TF32 dots are then exact fp32),
on GPU/TPU compiled.
Compiled kernels run only on their backend (GPU rows only when a GPU exists).
Ends with a table of tokens/s per (impl, mode) and L, with the ratio to
softmax_cudnn where both ran.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tqdm import tqdm

from kernels import reference as kref
from kernels.lightning_attention import lightning_attention
from kernels.linear_decode import linear_decode
from kernels.softmax_decode import softmax_decode

SEQ_IMPLS = ("lightning_jnp", "lightning_jnp_two_pass", "lightning_pallas", "lightning_pallas_fused",
             "lightning_chunked", "lightning_chunked_tf32",
             "lightning_chunked_bf16", "lightning_mosaic",
             "lightning_mosaic_bf16", "linear_cumsum",
             "softmax_xla", "softmax_cudnn")
# Backend a compiled implementation needs (others run anywhere).
NEEDS = {"lightning_pallas": "gpu", "lightning_pallas_fused": "gpu",
         "lightning_chunked": "gpu", "lightning_chunked_tf32": "gpu",
         "lightning_chunked_bf16": "gpu", "softmax_cudnn": "gpu",
         "lightning_mosaic": "tpu", "lightning_mosaic_bf16": "tpu"}
BF16 = ("softmax_cudnn", "lightning_chunked_bf16", "lightning_mosaic_bf16")


def _attn_fn(name: str, slopes: jax.Array, block: int,
             block_v: int | None = None) -> Callable:
  """Returns f(q, k, v) -> o with inputs [B, H, L, D]."""
  if name == "lightning_jnp":
    return lambda q, k, v: kref.lightning_attention_chunked(
        q, k, v, slopes, causal=True, block_size=block)
  if name == "lightning_jnp_two_pass":
    return lambda q, k, v: kref.lightning_attention_two_pass(
        q, k, v, slopes, causal=True, block_size=block)
  if name in ("lightning_pallas", "lightning_pallas_fused"):
    bwd = "fused" if name.endswith("fused") else "split"
    return lambda q, k, v: lightning_attention(
        q, k, v, slopes, causal=True, block_size=block, interpret=False,
        block_v=block_v, bwd=bwd, impl="triton_serial")
  if name.startswith("lightning_chunked"):
    prec = {"lightning_chunked": "ieee", "lightning_chunked_tf32": "tf32"}.get(name)
    return lambda q, k, v: lightning_attention(
        q, k, v, slopes, causal=True, block_size=block, interpret=False,
        impl="triton_chunked", precision=prec)
  if name.startswith("lightning_mosaic"):
    return lambda q, k, v: lightning_attention(
        q, k, v, slopes, causal=True, block_size=block, interpret=False,
        impl="mosaic")
  if name == "linear_cumsum":
    return lambda q, k, v: kref.linear_attention_cumsum(q, k, v, slopes)
  if name in ("softmax_xla", "softmax_cudnn"):
    impl = name.split("_")[1]

    def f(q, k, v):
      t = lambda a: jnp.swapaxes(a, 1, 2)  # -> [B, L, H, D]
      return t(jax.nn.dot_product_attention(t(q), t(k), t(v), is_causal=True,
                                            implementation=impl))
    return f
  raise ValueError(f"unknown implementation {name!r}; expected {SEQ_IMPLS}")


def _time(fn: Callable, args, repeats: int) -> tuple[float, float, int]:
  """(median seconds, compile seconds, peak bytes) of jitted fn(*args)."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  peak = -1
  if mem is not None:
    peak = int(mem.argument_size_in_bytes + mem.output_size_in_bytes +
               mem.temp_size_in_bytes - mem.alias_size_in_bytes)
  jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times), compile_s, peak


def _save(args, rows: list[dict]) -> None:
  """Writes the JSON (called after every row, so a cut-off run keeps data)."""
  dev = jax.devices()[0]
  out = {"backend": jax.default_backend(), "device": dev.device_kind,
         "jax": jax.__version__, "host": platform.machine(),
         "args": {k: v for k, v in vars(args).items() if k != "json"},
         "rows": rows}
  with open(args.json, "w") as f:
    json.dump(out, f, indent=1)


def bench_sequence(args, rows: list[dict]) -> list[dict]:
  b, h, d = args.batch, args.heads, args.head_dim
  slopes = kref.decay_slopes(h)
  limits = {"softmax_xla": args.max_len_softmax,
            "softmax_cudnn": args.max_len_cudnn,
            "linear_cumsum": args.max_len_cumsum}
  todo = [(length, name) for length in args.seq_lens for name in args.impls
          if length <= limits.get(name, 1 << 30)]
  for length, name in tqdm(todo, desc="sequence", file=sys.stderr):
    ks = jax.random.split(jax.random.key(length), 3)
    dtype = jnp.bfloat16 if name in BF16 else jnp.dtype(args.dtype)
    q, k, v = (jax.random.normal(kk, (b, h, length, d), dtype) for kk in ks)
    f = _attn_fn(name, slopes, args.block_size, args.block_v)
    fb = jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v).astype(
        jnp.float32)), argnums=(0, 1, 2))
    for mode, fn in (("fwd", f), ("fwd+bwd", fb)):
      if mode not in args.modes:
        continue
      try:
        sec, comp, peak = _time(fn, (q, k, v), args.repeats)
      except Exception as e:  # pylint: disable=broad-except
        print(f"{name} L={length} {mode}: failed: {type(e).__name__}: "
              f"{str(e)[:200]}", file=sys.stderr)
        continue
      row = {"section": "sequence", "impl": name, "mode": mode,
             "seq_len": length, "batch": b, "heads": h, "head_dim": d,
             "dtype": jnp.dtype(dtype).name, "seconds": sec,
             "tokens_per_s": b * length / sec, "peak_bytes": peak,
             "compile_s": comp}
      rows.append(row)
      _save(args, rows)
      tqdm.write(f"{name:22s} {mode:8s} L={length:6d} {row['tokens_per_s']:12.0f}"
                 f" tok/s  {peak / 2**20:9.1f} MiB  ({sec * 1e3:.2f} ms)")
  return rows


def bench_decode(args, rows: list[dict]) -> list[dict]:
  b, h, d = args.decode_batch, args.heads, args.head_dim
  slopes = kref.decay_slopes(h)
  on_gpu = jax.default_backend() == "gpu"
  on_tpu = jax.default_backend() == "tpu"
  for length in tqdm(args.decode_lens, desc="decode", file=sys.stderr):
    ks = jax.random.split(jax.random.key(length), 5)
    dt = jnp.dtype(args.dtype)
    q = jax.random.normal(ks[0], (b, h, d), dt)
    kc = jax.random.normal(ks[1], (b, h, length, d), dt)
    vc = jax.random.normal(ks[2], (b, h, length, d), dt)
    lengths = jnp.full((b,), length, jnp.int32)
    splits = max(1, min(args.k_splits, length // 64))
    fns = {"softmax_decode_jnp": (kref.softmax_decode_step,
                                  (q, kc, vc, lengths))}
    if on_gpu:
      from jax.experimental.pallas.ops.gpu import decode_attention  # pylint: disable=g-import-not-at-top
      fns["softmax_decode_pallas"] = (
          lambda q, kc, vc, ln: softmax_decode(
              q, kc, vc, ln, block_k=64, k_splits=splits, interpret=False),
          (q, kc, vc, lengths))
      # jax's kernel: GQA layout k [B, S, Hkv, D]; here Hkv = H (MHA).
      # Transposing the cache inside the timed call would bill the copy to
      # jax's kernel: time it on a cache already in its layout.
      kt, vt = jnp.swapaxes(kc, 1, 2), jnp.swapaxes(vc, 1, 2)
      fns["softmax_decode_jax"] = (
          lambda q, kt, vt, ln: decode_attention.gqa(
              q, kt, vt, kv_seq_len=ln, sm_scale=d ** -0.5, k_splits=splits),
          (q, kt, vt, lengths))
    if on_tpu:
      from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention  # pylint: disable=g-import-not-at-top
      fns["softmax_decode_mosaic"] = (
          lambda q, kc, vc, ln: softmax_decode(
              q, kc, vc, ln, block_k=min(512, length), impl="mosaic",
              interpret=False), (q, kc, vc, lengths))
      # jax's paged attention on the same cache as contiguous pages of 128
      # ([H, B * L / 128, 128, D], built outside the timed call).
      page = 128
      to_pages = lambda c: jnp.swapaxes(c, 0, 1).reshape(
          h, b * length // page, page, d)
      kp, vp = to_pages(kc), to_pages(vc)
      idx = jnp.arange(b * length // page, dtype=jnp.int32).reshape(b, -1)
      fns["softmax_decode_paged"] = (
          lambda q, kp, vp, ln, idx: paged_attention(
              q * d ** -0.5, kp, vp, ln, idx,
              pages_per_compute_block=min(4, length // page)),
          (q, kp, vp, lengths, idx))
    for name, (fn, fargs) in fns.items():
      try:
        sec, comp, peak = _time(fn, fargs, args.repeats)
      except Exception as e:  # pylint: disable=broad-except
        print(f"{name} L={length}: failed: {type(e).__name__}: {str(e)[:200]}",
              file=sys.stderr)
        continue
      rows.append({"section": "decode", "impl": name, "mode": "step",
                   "seq_len": length, "batch": b, "heads": h, "head_dim": d,
                   "dtype": dt.name, "seconds": sec, "tokens_per_s": b / sec,
                   "peak_bytes": peak, "compile_s": comp,
                   "k_splits": splits})
      _save(args, rows)
      tqdm.write(f"{name:22s} L={length:6d} {b / sec:12.0f} tok/s "
                 f"({sec * 1e6:.1f} us)")
  st = jnp.zeros((b, h, d, d), jnp.float32)
  q = jax.random.normal(jax.random.key(0), (b, h, d))
  fns = {"linear_decode_jnp": kref.linear_decode_step}
  if on_gpu:
    fns["linear_decode_pallas"] = lambda *a: linear_decode(
        *a, interpret=False, impl="triton")
  if on_tpu:
    fns["linear_decode_mosaic"] = lambda *a: linear_decode(
        *a, interpret=False, impl="mosaic")
  for name, fn in fns.items():
    sec, comp, peak = _time(fn, (q, q, q, st, slopes), args.repeats)
    rows.append({"section": "decode", "impl": name, "mode": "step",
                 "seq_len": None, "batch": b, "heads": h, "head_dim": d,
                 "dtype": "float32", "seconds": sec, "tokens_per_s": b / sec,
                 "peak_bytes": peak, "compile_s": comp})
    _save(args, rows)
    print(f"{name:22s} any L  {b / sec:12.0f} tok/s ({sec * 1e6:.1f} us)",
          flush=True)
  return rows


def summary_table(rows: list[dict]) -> str:
  """Markdown table: tokens/s per (impl, mode) and L; x = ratio to softmax_cudnn of the same mode and L."""
  seq = [r for r in rows if r["section"] == "sequence"]
  if not seq:
    return ""
  lens = sorted({r["seq_len"] for r in seq})
  cudnn = {(r["mode"], r["seq_len"]): r["tokens_per_s"] for r in seq
           if r["impl"] == "softmax_cudnn"}
  lines = ["| impl | mode | " + " | ".join(f"L={n}" for n in lens) + " |",
           "|---|---|" + "---|" * len(lens)]
  keys = sorted({(r["impl"], r["mode"]) for r in seq}, key=lambda k: (k[1], k[0]))
  for impl, mode in keys:
    cells = []
    for n in lens:
      r = [x for x in seq if (x["impl"], x["mode"], x["seq_len"]) == (impl, mode, n)]
      if not r:
        cells.append("-")
        continue
      tps = r[0]["tokens_per_s"]
      ratio = f" ({tps / cudnn[(mode, n)]:.2f}x)" if (mode, n) in cudnn else ""
      cells.append(f"{tps / 1e6:.3f}M{ratio}")
    lines.append(f"| {impl} | {mode} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


# (impl, precision, dtype) of kernels.lightning_attention measured by --accuracy.
ACCURACY_VARIANTS = (("triton_serial", None, "float32"),
                     ("triton_chunked", "ieee", "float32"),
                     ("triton_chunked", "tf32", "float32"),
                     ("triton_chunked", None, "bfloat16"),
                     ("mosaic", None, "float32"), ("mosaic", None, "bfloat16"))


def _np_lightning_grads(q, k, v, slopes, ct):
  """float64 causal o and grads of sum(o * ct) (quadratic form)."""
  q, k, v, ct = (np.asarray(jnp.asarray(x, jnp.float32), np.float64)
                 for x in (q, k, v, ct))
  t = np.arange(q.shape[2])
  d = t[:, None] - t[None, :]
  w = np.where(d >= 0, np.exp(-np.asarray(slopes, np.float64)[:, None, None]
                              * np.maximum(d, 0)), 0.0)
  a = w * np.einsum("bhtd,bhsd->bhts", q, k)
  g = w * np.einsum("bhte,bhse->bhts", ct, v)
  return (np.einsum("bhts,bhse->bhte", a, v),
          np.einsum("bhts,bhsd->bhtd", g, k),
          np.einsum("bhts,bhtd->bhsd", g, q),
          np.einsum("bhts,bhte->bhse", a, ct))


def bench_accuracy(args, rows: list[dict]) -> list[dict]:
  backend = jax.default_backend()
  b, h, d, n = 1, args.heads, args.head_dim, args.accuracy_len
  slopes = kref.decay_slopes(h)
  ks = jax.random.split(jax.random.key(0), 4)
  base = [jax.random.normal(kk, (b, h, n, d)) for kk in ks]
  for impl, prec, dt in tqdm(ACCURACY_VARIANTS, desc="accuracy", file=sys.stderr):
    own = {"triton": "gpu", "mosaic": "tpu"}[impl.split("_")[0]]
    if backend not in ("cpu", own):
      continue
    q, k, v, ct = (x.astype(dt) for x in base)

    def f(q, k, v, ct, impl=impl, prec=prec):
      o, vjp = jax.vjp(lambda q, k, v: lightning_attention(
          q, k, v, slopes, block_size=args.block_size, impl=impl,
          precision=prec, interpret=backend != own), q, k, v)
      return (o, *vjp(ct))
    got = jax.jit(f)(q, k, v, ct)
    want = _np_lightning_grads(q, k, v, slopes, ct)
    err = {name: float(np.linalg.norm(
        np.asarray(g.astype(jnp.float32), np.float64) - w) / np.linalg.norm(w))
           for name, g, w in zip(("o", "dq", "dk", "dv"), got, want)}
    rows.append({"section": "accuracy", "impl": impl, "precision": prec,
                 "dtype": dt, "seq_len": n, "heads": h, "head_dim": d,
                 "interpret": backend != own, "rel_err": err})
    _save(args, rows)
    tqdm.write(f"{impl:15s} {str(prec):5s} {dt:9s} " + "  ".join(
        f"{k_} {e:.2e}" for k_, e in err.items()))
  return rows


def _ints(s: str) -> list[int]:
  return [int(x) for x in s.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--json", required=True, help="output JSON path")
  p.add_argument("--seq_lens", type=_ints,
                 default=[512, 1024, 2048, 4096, 8192, 16384, 32768])
  p.add_argument("--impls", type=lambda s: s.split(","), default=None,
                 help=f"comma list from {SEQ_IMPLS}; default: all that run "
                 "on this backend")
  p.add_argument("--modes", type=lambda s: s.split(","),
                 default=["fwd", "fwd+bwd"])
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--heads", type=int, default=2)
  p.add_argument("--head_dim", type=int, default=64)
  p.add_argument("--block_size", type=int, default=64)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--max_len_softmax", type=int, default=16384)
  p.add_argument("--max_len_cudnn", type=int, default=1 << 30)
  p.add_argument("--block_v", type=int, default=None,
                 help="lightning_pallas: split Dv over programs")
  p.add_argument("--max_len_cumsum", type=int, default=8192)
  p.add_argument("--decode", action="store_true", help="add decode steps")
  p.add_argument("--decode_lens", type=_ints, default=[1024, 4096, 16384])
  p.add_argument("--decode_batch", type=int, default=8)
  p.add_argument("--k_splits", type=int, default=8)
  p.add_argument("--accuracy", action="store_true",
                 help="add kernel errors vs float64 (see module doc)")
  p.add_argument("--accuracy_len", type=int, default=256)
  p.add_argument("--no_speed", action="store_true",
                 help="skip the sequence section (e.g. --accuracy only)")
  args = p.parse_args(argv)
  backend = jax.default_backend()
  if args.impls is None:
    args.impls = ["lightning_jnp", "lightning_jnp_two_pass", "linear_cumsum",
                  "softmax_xla"]
    if backend == "gpu":
      args.impls += ["lightning_pallas", "lightning_chunked",
                     "lightning_chunked_tf32", "lightning_chunked_bf16",
                     "softmax_cudnn"]
    if backend == "tpu":
      args.impls += ["lightning_mosaic", "lightning_mosaic_bf16"]
  bad = set(args.impls) - set(SEQ_IMPLS)
  if bad:
    raise ValueError(f"unknown --impls {sorted(bad)}; expected {SEQ_IMPLS}")
  wrong = [n for n in args.impls if NEEDS.get(n, backend) != backend]
  if wrong:
    raise ValueError(f"--impls {wrong} need another backend (this one is {backend!r}): "
                     f"{ {n: NEEDS[n] for n in wrong} }")
  if min(args.seq_lens) <= 0 or args.repeats <= 0:
    raise ValueError("--seq_lens and --repeats must be positive")
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  rows: list[dict] = []
  if not args.no_speed:
    bench_sequence(args, rows)
  if args.decode:
    bench_decode(args, rows)
  if args.accuracy:
    bench_accuracy(args, rows)
  _save(args, rows)
  print(summary_table(rows))
  print(f"wrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
  main()
