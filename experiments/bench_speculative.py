r"""Speculative decoding with nested (width-sliced) drafts of a trained DecoderLM: acceptance and speed-up.

  python -m experiments.bench_speculative --checkpoint_dir WORKDIR/checkpoints --json OUT \
      [--widths 0.25,0.5] [--gammas 2,4,8] [--batch 8] [--prompt_len 32] [--max_new_tokens 64] [--repeats 3]

Prompts are the first `prompt_len` bytes of `batch` chunks of the held-out Python stdlib source (the 'pycode'
task of gcide_text, equal lengths as speculative_generate needs). For each draft width and gamma it runs
greedy plain decoding (mtl.decode.generate) and speculative decoding (mtl.speculative) on the same prompts,
checks the greedy outputs are identical (the draft may only change speed), and reports the acceptance rate,
tokens per verification round, median wall time of a jitted call (compilation excluded) and the speed-up
over plain decoding. Also prints each draft's weight-MACs-per-token ratio to the full model.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np

from experiments.generate import load
from mtl import decode, speculative
from mtl.data.text import datasets, stdlib_source, tokenizer as tk
from mtl.models.lm import DecoderLM, slice_params


def code_prompts(batch: int, prompt_len: int, split: str = "test") -> np.ndarray:
  """int32 [batch, 1 + prompt_len]: [pycode task token] + the first bytes of `batch` spread-out chunks."""
  n = stdlib_source.num_chunks(split, 256)
  if n < batch:
    raise ValueError(f"the {split} stdlib corpus has {n} chunks of 256 bytes, fewer than batch={batch}")
  task = datasets.TOKENIZER.task_token(datasets.GCIDE_TASKS.index("pycode"))
  rows = [[task] + stdlib_source.chunk(split, i * (n // batch), 256)[:prompt_len] for i in range(batch)]
  return np.asarray(rows, np.int32)


def matmul_macs_per_token(params) -> int:
  """Weight MACs per token: the sizes of every matmul kernel (blocks + output head; not the embedding lookup).

  The context-dependent attention MACs are excluded; they are small at these lengths for both mixers.
  """
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [str(getattr(k, "key", k)) for k in path]
    if names[-1] == "kernel" and "embed" not in names:
      total += int(np.prod(leaf.shape))
  return total


def _timed(fn, repeats: int) -> tuple[dict, float]:
  out = fn()  # compile
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return out, float(np.median(times))


def run(model: DecoderLM, params, prompts: np.ndarray, widths: list[float], gammas: list[int],
        max_new_tokens: int, repeats: int) -> dict:
  """The benchmark rows (see module docstring)."""
  stop = (tk.EOS,)
  plain, t_plain = _timed(lambda: decode.generate(model, params, prompts, max_new_tokens=max_new_tokens,
                                                  stop_tokens=stop, pad_token=tk.PAD), repeats)
  new_tokens = int(np.sum(plain["lengths"] - prompts.shape[1]))
  rows = [{"mode": "plain", "seconds": t_plain, "tokens_per_s": new_tokens / t_plain}]
  full_cost = matmul_macs_per_token(params)
  for w in widths:
    cost = matmul_macs_per_token(slice_params(params, model, w)) / full_cost
    for g in gammas:
      spec, t = _timed(lambda: speculative.speculative_generate(
          model, params, prompts, max_new_tokens=max_new_tokens, draft_width=w, gamma=g,
          stop_tokens=stop, pad_token=tk.PAD), repeats)
      same = bool(np.array_equal(spec["tokens"], plain["tokens"]))
      rows.append({"mode": "speculative", "draft_width": w, "draft_macs_ratio": cost, "gamma": g,
                   "seconds": t, "tokens_per_s": new_tokens / t, "speedup": t_plain / t,
                   "identical_to_plain": same, **spec["stats"]})
  return {"new_tokens": new_tokens, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--checkpoint_dir", required=True)
  ap.add_argument("--json", required=True)
  ap.add_argument("--widths", default="0.25,0.5")
  ap.add_argument("--gammas", default="2,4,8")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--prompt_len", type=int, default=32)
  ap.add_argument("--max_new_tokens", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=3)
  a = ap.parse_args(argv)
  model, params = load(a.checkpoint_dir)
  prompts = code_prompts(a.batch, a.prompt_len)
  widths = [float(w) for w in a.widths.split(",") if w]
  gammas = [int(g) for g in a.gammas.split(",") if g]
  result = run(model, params, prompts, widths, gammas, a.max_new_tokens, a.repeats)
  result["meta"] = {"checkpoint_dir": a.checkpoint_dir, "device": jax.devices()[0].device_kind,
                    "host": platform.machine(), "batch": a.batch, "prompt_len": a.prompt_len,
                    "max_new_tokens": a.max_new_tokens, "model": {k: getattr(model, k) for k in (
                        "dim", "depth", "num_heads", "mixer")}}
  print(f"{'mode':12s} {'width':>5s} {'macs':>5s} {'gamma':>5s} {'accept':>6s} {'tok/round':>9s} "
        f"{'tok/s':>8s} {'speed-up':>8s} identical")
  for r in result["rows"]:
    if r["mode"] == "plain":
      print(f"{'plain':12s} {'1':>5s} {'1':>5s} {'-':>5s} {'-':>6s} {'1':>9s} {r['tokens_per_s']:8.1f} "
            f"{'1.00x':>8s}")
    else:
      print(f"{'speculative':12s} {r['draft_width']:5g} {r['draft_macs_ratio']:5.2f} {r['gamma']:5d} "
            f"{r['acceptance_rate']:6.2f} {r['tokens_per_round']:9.2f} {r['tokens_per_s']:8.1f} "
            f"{r['speedup']:7.2f}x {r['identical_to_plain']}")
  with open(a.json, "w") as f:
    json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
