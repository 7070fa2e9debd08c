"""Decode benchmark: tokens/s and per-token latency vs context length, softmax vs lightning.

  python -m experiments.bench_decode --json OUT [--contexts 1024,2048,...,32768]
      [--batch 8] [--steps 64] [--dim 512 --depth 4 --heads 8] [--impl jnp|pallas]
      [--kv_variants mha,gqa4,mqa,cla2,gqa4+cla2]

--kv_variants benchmarks softmax-mixer KV layouts side by side instead of --mixers: `mha`, `gqaN` (N KV
heads), `mqa` (1 KV head), `claS` (S adjacent layers share K/V), combined with '+'.

For each mixer and context length C the decode state is set to "C tokens
already seen" (softmax: a KV cache holding C random keys/values; lightning: a
random recurrent state at position C; the values do not change the cost), then
`steps` greedy decode steps run inside one jitted `lax.fori_loop`; the time is
the median of 3 runs after a warm-up. The softmax step reads the whole
valid cache (cost grows with C); the lightning step reads a constant-size
[H, 2Dh, Dh] state per layer (flat in C). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import tqdm

from mtl.decode import round_up
from mtl.models.lm import DecoderLM
from mtl.nn.attention import kv_cache_bytes


def _fake_state(cache, context, key):
  out = []
  for i, st in enumerate(cache):
    k = jax.random.fold_in(key, i)
    if not st:  # cross-layer-attention consumer: no state of its own
      out.append(st)
    elif "length" in st:
      kk, kv = jax.random.split(k)
      out.append({"k": jax.random.normal(kk, st["k"].shape, st["k"].dtype),
                  "v": jax.random.normal(kv, st["v"].shape, st["v"].dtype),
                  "length": jnp.full_like(st["length"], context)})
    else:
      out.append({"kv": 0.01 * jax.random.normal(k, st["kv"].shape),
                  "pos": jnp.full_like(st["pos"], context)})
  return out


def parse_kv_variant(name: str, heads: int) -> dict:
  """'mha' | 'gqaN' | 'mqa' | 'claS' joined by '+' -> DecoderLM kwargs {num_kv_heads, kv_share}."""
  out = {"num_kv_heads": None, "kv_share": 1}
  for part in name.split("+"):
    if part == "mha":
      continue
    if part == "mqa":
      out["num_kv_heads"] = 1
    elif part.startswith("gqa") and part[3:].isdigit():
      out["num_kv_heads"] = int(part[3:])
    elif part.startswith("cla") and part[3:].isdigit():
      out["kv_share"] = int(part[3:])
    else:
      raise ValueError(f"unknown KV variant {part!r} in {name!r}; expected mha, mqa, gqaN, claS joined by '+'")
  if out["num_kv_heads"] is not None and heads % out["num_kv_heads"]:
    raise ValueError(f"KV variant {name!r}: {out['num_kv_heads']} KV heads do not divide {heads} heads")
  return out


def bench_one(mixer: str, context: int, *, batch: int, steps: int, dim: int,
              depth: int, heads: int, vocab: int, impl: str, variant: str | None = None) -> dict:
  """Times `steps` decode steps after `context` tokens; returns a result row."""
  kv = parse_kv_variant(variant, heads) if variant else {}
  model = DecoderLM(vocab, dim, depth, heads, mixer=mixer, impl=impl, **kv)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  max_len = round_up(context + steps, 64)
  cache = model.apply({"params": params}, batch, max_len, method=DecoderLM.init_cache)
  cache = _fake_state(cache, context, jax.random.PRNGKey(1))

  @jax.jit
  def run(params, cache, tok):
    def body(_, c):
      tok, cache = c
      logits, cache = model.apply({"params": params}, tok, cache, method=DecoderLM.step)
      return jnp.argmax(logits, -1).astype(jnp.int32), cache
    return jax.lax.fori_loop(0, steps, body, (tok, cache))[0]

  tok = jnp.zeros((batch,), jnp.int32)
  jax.block_until_ready(run(params, cache, tok))
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(run(params, cache, tok))
    times.append(time.perf_counter() - t0)
  t = sorted(times)[1]
  state_bytes = sum(x.size * x.dtype.itemsize for st in cache for x in jax.tree.leaves(st))
  row = {"mixer": mixer, "context": context, "batch": batch, "steps": steps,
         "ms_per_token": 1e3 * t / steps, "tokens_per_s": batch * steps / t,
         "state_mib": state_bytes / 2**20}
  if variant:
    row.update(variant=variant, num_kv_heads=kv["num_kv_heads"] or heads, kv_share=kv["kv_share"],
               kv_cache_bytes=kv_cache_bytes(cache))
  return row


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--json", required=True)
  ap.add_argument("--contexts", default="1024,2048,4096,8192,16384,32768")
  ap.add_argument("--mixers", default="softmax,lightning")
  ap.add_argument("--kv_variants", default="", help="softmax KV layouts, e.g. mha,gqa4,mqa,cla2 (replaces --mixers)")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--steps", type=int, default=64)
  ap.add_argument("--dim", type=int, default=512)
  ap.add_argument("--depth", type=int, default=4)
  ap.add_argument("--heads", type=int, default=8)
  ap.add_argument("--vocab", type=int, default=272)
  ap.add_argument("--impl", default=None, help="jnp or pallas (default: pallas on GPU/TPU, jnp on CPU)")
  a = ap.parse_args(argv)
  impl = a.impl or ("jnp" if jax.default_backend() == "cpu" else "pallas")
  if impl not in ("jnp", "pallas"):
    raise ValueError(f"--impl must be jnp or pallas, got {impl!r}")
  contexts = [int(c) for c in a.contexts.split(",") if c]
  variants = [v for v in a.kv_variants.split(",") if v]
  runs = ([("softmax", v) for v in variants] if variants
          else [(m, None) for m in a.mixers.split(",") if m])
  for _, v in runs:
    if v:
      parse_kv_variant(v, a.heads)  # fail before any timing
  rows = []
  print(f"{'mixer':>10} {'variant':>10} {'context':>8} {'ms/token':>10} {'tokens/s':>12} {'state MiB':>10}")
  total = len(runs) * len(contexts)
  with tqdm.tqdm(total=total, desc="bench_decode", leave=False) as bar:
    for c in contexts:            # variants side by side at each context
      for mixer, v in runs:
        r = bench_one(mixer, c, batch=a.batch, steps=a.steps, dim=a.dim, depth=a.depth,
                      heads=a.heads, vocab=a.vocab, impl=impl, variant=v)
        rows.append(r)
        bar.update(1)
        tqdm.tqdm.write(f"{mixer:>10} {v or '-':>10} {c:>8} {r['ms_per_token']:>10.3f} "
                        f"{r['tokens_per_s']:>12.1f} {r['state_mib']:>10.2f}")
  for mixer, v in runs:
    rs = [r for r in rows if r["mixer"] == mixer and r.get("variant") == v]
    if len(rs) > 1:
      print(f"{mixer} {v or ''}: ms/token at {rs[-1]['context']} / at {rs[0]['context']} = "
            f"{rs[-1]['ms_per_token'] / rs[0]['ms_per_token']:.2f}x")
  if "mha" in variants:
    for c in contexts:
      base = next(r for r in rows if r["context"] == c and r["variant"] == "mha")
      for r in rows:
        if r["context"] == c:
          r["kv_bytes_vs_mha"] = r["kv_cache_bytes"] / base["kv_cache_bytes"]
          r["speedup_vs_mha"] = r["tokens_per_s"] / base["tokens_per_s"]
  out = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
         "jax": jax.__version__, "host": platform.node(), "impl": impl,
         "config": {k: v for k, v in vars(a).items() if k != "json"}, "results": rows}
  with open(a.json, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
