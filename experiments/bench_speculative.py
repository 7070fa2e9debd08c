r"""Speculative decoding with nested (width-sliced) drafts of a trained DecoderLM: acceptance and speed-up.

  python -m experiments.bench_speculative --checkpoint_dir WORKDIR/checkpoints --json OUT \
      [--widths 0.25,0.5] [--gammas 2,4,8] [--batches 1,8] [--prompt_len 32] [--max_new_tokens 64] \
      [--repeats 3] [--step_iters 16] [--eval_batches 0]

Prompts are the first `prompt_len` bytes of `batch` chunks of the held-out Python stdlib source (the 'pycode'
task of gcide_text, equal lengths as speculative_generate needs). For each batch size, draft width and gamma
it runs greedy plain decoding (mtl.decode.generate) and speculative decoding (mtl.speculative) on the same
prompts, alternating the two `repeats` times (so both see the same machine load), checks that the outputs
are identical (the draft may only change speed), and reports the acceptance rate, tokens per verification
round, median wall time of a jitted call (compilation excluded) and the speed-up over plain decoding, and the
same from the CPU time of the process (`cpu_speedup`: on a machine shared with other jobs the wall time also
counts the time the process waited for a core).

Why a speed-up is what it is: `step_costs` times, inside one jitted `fori_loop` of `step_iters` calls, a
target decode step, a draft decode step per width and the target's verification pass (`extend` over
gamma + 1 tokens) per gamma; each row gets the speed-up these predict,
  tokens_per_round * t_step / (gamma * t_draft + t_verify).
`--eval_batches N` adds the test-split loss / perplexity of the target and of every draft width over the
first N eval batches of the run's dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments.generate import load
from mtl import decode, speculative
from mtl.data.text import datasets, stdlib_source, tokenizer as tk
from mtl.decode import round_up
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


def _timed_pair(fa, fb, repeats: int) -> tuple[dict, dict, dict]:
  """Compiles both, then times them alternately `repeats` times: (out_a, out_b, medians), medians =
  {'a', 'b': wall seconds, 'a_cpu', 'b_cpu': CPU seconds of this process (all its threads)}."""
  out_a, out_b = fa(), fb()
  times = {"a": [], "b": [], "a_cpu": [], "b_cpu": []}
  for _ in range(repeats):
    for name, fn in (("a", fa), ("b", fb)):
      t, c = time.perf_counter(), time.process_time()
      out = fn()
      times[name].append(time.perf_counter() - t)
      times[name + "_cpu"].append(time.process_time() - c)
      out_a, out_b = (out, out_b) if name == "a" else (out_a, out)
  return out_a, out_b, {k: float(np.median(v)) for k, v in times.items()}


def step_costs(model: DecoderLM, params, batch: int, context: int, widths: list[float], gammas: list[int],
               iters: int) -> dict:
  """Milliseconds per call (CPU time on CPU, wall time on an accelerator), each timed as a jitted fori_loop of
  `iters` calls after a `context`-token prefill:
  {'target_step', 'draft_step': {width}, 'verify': {gamma: target extend over gamma + 1 tokens}}."""
  if iters < 1:
    raise ValueError(f"step_iters must be >= 1, got {iters}")
  prompt = jnp.ones((batch, context), jnp.int32)
  cache_len = round_up(context + iters + max(gammas) + 2, 16)

  # CPU milliseconds of this process per call on CPU (robust to a shared machine); wall time on an accelerator
  # (the host process idles while the device works).
  clock = time.process_time if jax.default_backend() == "cpu" else time.perf_counter

  def timed(fn, *args):
    jax.block_until_ready(fn(*args))
    t = []
    for _ in range(3):
      s = clock()
      jax.block_until_ready(fn(*args))
      t.append(clock() - s)
    return 1e3 * float(np.median(t)) / iters

  def prefilled(m, p):
    cache = m.apply({"params": p}, batch, cache_len, method=DecoderLM.init_cache)
    return m.apply({"params": p}, prompt, cache, method=DecoderLM.prefill)[1]

  def step_ms(m, p):
    @jax.jit
    def run(p, cache):
      def body(_, c):
        tok, cache = c
        logits, cache = m.apply({"params": p}, tok, cache, method=DecoderLM.step)
        return jnp.argmax(logits, -1).astype(jnp.int32), cache
      return jax.lax.fori_loop(0, iters, body, (jnp.zeros((batch,), jnp.int32), cache))[0]
    return timed(run, p, prefilled(m, p))

  def verify_ms(c):
    @jax.jit
    def run(p, cache):
      def body(i, acc):
        chunk = jnp.full((batch, c), i % 7, jnp.int32)
        logits, _ = model.apply({"params": p}, chunk, cache, method=DecoderLM.extend)
        return acc + logits[:, :, 0].sum()
      return jax.lax.fori_loop(0, iters, body, jnp.float32(0))
    return timed(run, params, prefilled(model, params))

  return {"target_step": step_ms(model, params),
          "draft_step": {w: step_ms(model.slim(w), slice_params(params, model, w)) for w in widths},
          "verify": {g: verify_ms(g + 1) for g in gammas}}


def run(model: DecoderLM, params, prompts: np.ndarray, widths: list[float], gammas: list[int],
        max_new_tokens: int, repeats: int, costs: dict | None = None, progress: bool = False) -> dict:
  """Plain and speculative rows for one batch of prompts (see module docstring)."""
  stop = (tk.EOS,)
  plain_fn = lambda: decode.generate(model, params, prompts, max_new_tokens=max_new_tokens, stop_tokens=stop,
                                     pad_token=tk.PAD)
  plain = plain_fn()
  new_tokens = int(np.sum(plain["lengths"] - prompts.shape[1]))
  full_cost = matmul_macs_per_token(params)
  rows, plain_times = [], []
  configs = [(w, g) for w in widths for g in gammas]
  for w, g in tqdm(configs, desc=f"batch {prompts.shape[0]}", disable=not progress):
    cost = matmul_macs_per_token(slice_params(params, model, w)) / full_cost
    _, spec, tm = _timed_pair(plain_fn, lambda: speculative.speculative_generate(
        model, params, prompts, max_new_tokens=max_new_tokens, draft_width=w, gamma=g, stop_tokens=stop,
        pad_token=tk.PAD), repeats)
    t_plain, t = tm["a"], tm["b"]
    plain_times.append(t_plain)
    st = {k: v for k, v in spec["stats"].items() if k not in ("row_accepted", "row_rounds")}
    row = {"mode": "speculative", "draft_width": w, "draft_macs_ratio": cost, "gamma": g, "seconds": t,
           "plain_seconds": t_plain, "tokens_per_s": new_tokens / t, "plain_tokens_per_s": new_tokens / t_plain,
           "speedup": t_plain / t, "cpu_seconds": tm["b_cpu"], "plain_cpu_seconds": tm["a_cpu"],
           "cpu_speedup": tm["a_cpu"] / tm["b_cpu"],
           "identical_to_plain": bool(np.array_equal(spec["tokens"], plain["tokens"])),
           **st}
    if costs is not None:
      row["predicted_speedup"] = st["tokens_per_round"] * costs["target_step"] / (
          g * costs["draft_step"][w] + costs["verify"][g])
    rows.append(row)
  t_plain = float(np.median(plain_times)) if plain_times else float("nan")
  c_plain = float(np.median([r["plain_cpu_seconds"] for r in rows])) if rows else float("nan")
  return {"new_tokens": new_tokens,
          "rows": [{"mode": "plain", "seconds": t_plain, "tokens_per_s": new_tokens / t_plain,
                    "cpu_seconds": c_plain}] + rows}


def test_eval(workdir: str, widths: list[float], max_batches: int) -> dict:
  """{width: {task: metrics}} on the first `max_batches` batches of the run's test split (1.0 = target)."""
  from mtl.train import loop
  exp, state, step = loop.restore_experiment(workdir)
  out = {"step": step, "batches": max_batches, "batch_size": exp.config.get("eval_batch_size")}
  for w in [1.0] + widths:
    out[str(w)] = loop.evaluate_split(exp, state, exp.config.dataset.get("test_split", "test"),
                                      model_kwargs={"width": w}, max_batches=max_batches)
  return out


def _print_table(result: dict) -> None:
  print(f"{'batch':>5s} {'mode':12s} {'width':>5s} {'macs':>5s} {'gamma':>5s} {'accept':>6s} {'tok/round':>9s} "
        f"{'tok/s':>8s} {'plain':>8s} {'speed-up':>8s} {'cpu':>6s} {'model':>6s} identical")
  for b, res in result["batches"].items():
    for r in res["rows"]:
      if r["mode"] == "plain":
        print(f"{b:>5s} {'plain':12s} {'1':>5s} {'1':>5s} {'-':>5s} {'-':>6s} {'1':>9s} {r['tokens_per_s']:8.1f} "
              f"{r['tokens_per_s']:8.1f} {'1.00x':>8s}")
      else:
        pred = f"{r['predicted_speedup']:5.2f}x" if "predicted_speedup" in r else "-"
        print(f"{b:>5s} {'speculative':12s} {r['draft_width']:5g} {r['draft_macs_ratio']:5.2f} {r['gamma']:5d} "
              f"{r['acceptance_rate']:6.2f} {r['tokens_per_round']:9.2f} {r['tokens_per_s']:8.1f} "
              f"{r['plain_tokens_per_s']:8.1f} {r['speedup']:7.2f}x {r['cpu_speedup']:5.2f}x {pred:>6s} "
              f"{r['identical_to_plain']}")
  for b, c in result.get("step_costs", {}).items():
    print(f"batch {b}: ms per target step {c['target_step']:.2f}, draft step "
          + ", ".join(f"w{w}: {v:.2f}" for w, v in c["draft_step"].items()) + "; verify "
          + ", ".join(f"gamma {g}: {v:.2f}" for g, v in c["verify"].items()))


def main(argv: list[str] | None = None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--checkpoint_dir", required=True)
  ap.add_argument("--json", required=True)
  ap.add_argument("--widths", default="0.25,0.5")
  ap.add_argument("--gammas", default="2,4,8")
  ap.add_argument("--batches", default="1,8")
  ap.add_argument("--prompt_len", type=int, default=32)
  ap.add_argument("--max_new_tokens", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--step_iters", type=int, default=16, help="calls per step-cost timing (0: skip)")
  ap.add_argument("--eval_batches", type=int, default=0, help="test batches for target/draft perplexity (0: skip)")
  args = sys.argv[1:] if argv is None else argv
  a = ap.parse_args(args)
  widths = [float(w) for w in a.widths.split(",") if w]
  gammas = [int(g) for g in a.gammas.split(",") if g]
  batches = [int(b) for b in a.batches.split(",") if b]
  if not widths or not gammas or not batches:
    raise ValueError("--widths, --gammas and --batches must each name at least one value")
  for w in widths:
    if not 0.0 < w < 1.0:
      raise ValueError(f"--widths must lie in (0, 1) (nested drafts), got {w}")
  if min(gammas) < 1 or min(batches) < 1 or a.repeats < 1:
    raise ValueError(f"gammas, batches and repeats must be >= 1, got {gammas}, {batches}, {a.repeats}")
  model, params = load(a.checkpoint_dir)
  n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
  env = f"XLA_FLAGS={shlex.quote(os.environ['XLA_FLAGS'])} " if os.environ.get("XLA_FLAGS") else ""
  result = {"meta": {
      "command": env + "python3 -m experiments.bench_speculative " + shlex.join(args),
      "checkpoint_dir": a.checkpoint_dir, "device": jax.devices()[0].device_kind, "host": platform.machine(),
      "prompt_len": a.prompt_len, "max_new_tokens": a.max_new_tokens, "repeats": a.repeats, "params": n_params,
      "draft_params": {w: int(sum(x.size for x in jax.tree_util.tree_leaves(slice_params(params, model, w))))
                       for w in widths},
      "model": {k: getattr(model, k) for k in ("dim", "depth", "num_heads", "mixer", "vocab_size")}},
      "batches": {}, "step_costs": {}}
  for b in batches:
    prompts = code_prompts(b, a.prompt_len)
    costs = None
    if a.step_iters:
      costs = step_costs(model, params, b, prompts.shape[1], widths, gammas, a.step_iters)
      result["step_costs"][str(b)] = costs
    result["batches"][str(b)] = run(model, params, prompts, widths, gammas, a.max_new_tokens, a.repeats, costs,
                                    progress=True)
  if a.eval_batches:
    result["test_eval"] = test_eval(os.path.dirname(os.path.abspath(a.checkpoint_dir)), widths, a.eval_batches)
  _print_table(result)
  if "test_eval" in result:
    for w in ["1.0"] + [str(x) for x in widths]:
      print(f"test (first {a.eval_batches} batches) width {w}: " + ", ".join(
          f"{t} ppl {m.get('perplexity', float('nan')):.2f}" for t, m in result["test_eval"][w].items()))
  with open(a.json, "w") as f:
    json.dump(result, f, indent=1, default=str)
  return result


if __name__ == "__main__":
  main()
