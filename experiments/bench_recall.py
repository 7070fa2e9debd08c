r"""MQAR recall vs model width per mixer: Zoology's Figure 2 protocol (Arora et al. 2023), scaled to a small CPU.

  python -m experiments.bench_recall --json docs/bench_recall.json --png docs/bench_recall.png \
      [--seq_lens 64,128,256] [--widths 64,128,256] [--mixers softmax_conv,linear_conv,lightning_conv] \
      [--lrs 1e-3,3e-3] [--max_steps 64:1500,128:2000] [--batch 64] [--vocab 8192]

For every sequence length L (with K = L / 16 key-value pairs: 4, 8, 16 at L = 64, 128, 256, as Zoology's
train sets), mixer and width it trains a 2-block DecoderLM on a fresh stream of MQAR sequences in Zoology's
format (mtl/data/text/mqar.py: queries hold only the key, distinct values, power law a = 0.01, vocab 8192)
with AdamW (weight decay 0.1, cosine schedule, 5% warm-up) for each learning rate of the sweep, evaluates
recall on a separate test set every `eval_every` steps and stops a run at recall >= 0.99; the sweep stops at
the first learning rate that reaches 0.99 (a later one could only tie). Reported per (L, mixer, width): the
best recall over the sweep, its recall by query order beside the shortcut level (1/K: no shortcut exists in
this format), the steps it took and the mixer's decode state size (floats per sequence, summed over blocks:
the quantity Zoology plots recall against). The loss is the cross-entropy at the K query positions only
(`DecoderLM.logits(tokens, index)`), so the V-wide output head costs K, not L, rows per sequence.

Mixers: softmax / lightning / linear (Based's Taylor feature map, feature_dim 16, 1 head as in Zoology's
Based configs) / conv (the gated short convolution alone), each with a gated kernel-3 short convolution before
it when suffixed '_conv' (Zoology's Hybrid). Softmax uses RoPE, lightning `--lightning_slopes`; `lightning_id_conv`
is lightning with identity q/k features and no LRPE (TransNormerLLM's silu features and LRPE off: plain decayed
linear attention, as RetNet without xPos); `lightning_nolrpe_conv` (silu, no LRPE) and `lightning_idlrpe_conv`
(identity, LRPE) change one of the two.

Results are appended to --json after every run and runs already in it are skipped, so a grid can be grown in
several invocations. Writes a PNG with one column per L: recall vs width and recall vs decode state size, one
line per mixer.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from mtl.data.text import mqar
from mtl.models.lm import DecoderLM
from mtl.train.optimizer import build_optimizer

MIXERS = {  # name -> DecoderLM kwargs (besides vocab, dim, depth)
    "softmax": dict(mixer="softmax", num_heads=2),
    "softmax_conv": dict(mixer="softmax", num_heads=2, short_conv=3),
    "lightning": dict(mixer="lightning", num_heads=2),
    "lightning_conv": dict(mixer="lightning", num_heads=2, short_conv=3),
    # lightning with identity q/k features and no LRPE (plain decayed linear attention, RetNet-like), and the
    # two halves of that change alone
    "lightning_id_conv": dict(mixer="lightning", num_heads=2, short_conv=3, lightning_lrpe=False,
                              lightning_qk_activation="none"),
    "lightning_nolrpe_conv": dict(mixer="lightning", num_heads=2, short_conv=3, lightning_lrpe=False),
    "lightning_idlrpe_conv": dict(mixer="lightning", num_heads=2, short_conv=3, lightning_qk_activation="none"),
    "linear": dict(mixer="linear", num_heads=1, feature_dim=16),
    "linear_conv": dict(mixer="linear", num_heads=1, feature_dim=16, short_conv=3),
    "conv": dict(mixer="conv", num_heads=1, short_conv=3),
}
TRAIN_SEED, TEST_SEED = 0, 1


def num_pairs(seq_len: int) -> int:
  """Key-value pairs at length L: L / 16 (Zoology's train sets: 4, 8, 16 at 64, 128, 256)."""
  return max(1, seq_len // 16)


def state_floats(model: DecoderLM, seq_len: int) -> int:
  """Decode state per sequence after seq_len tokens, floats summed over blocks: the float entries of the model's
  own decode cache (`DecoderLM.init_cache(1, seq_len)`: KV cache for softmax, recurrent state for lightning and
  linear attention, conv history), shapes only."""
  cache = jax.eval_shape(lambda: model.apply({}, 1, seq_len, method=DecoderLM.init_cache))
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(cache) if jnp.issubdtype(a.dtype, jnp.floating))


def query_index(targets: np.ndarray, num_kv: int) -> np.ndarray:
  """Positions of the K queries of each row, int32 [B, K] (every row holds exactly K)."""
  rows, cols = np.nonzero(targets >= 0)
  if len(rows) != targets.shape[0] * num_kv:
    raise ValueError("every MQAR row must hold num_kv queries")
  return cols.reshape(targets.shape[0], num_kv).astype(np.int32)


def train_one(mixer: str, seq_len: int, width: int, lr: float, *, vocab: int, batch: int, max_steps: int,
              eval_every: int, test_size: int, target: float = 0.99, seed: int = 0, log: bool = False) -> dict:
  """Trains one model; returns its best test recall, recall by query order at that point and the steps taken."""
  num_kv = num_pairs(seq_len)
  model = DecoderLM(vocab, width, 2, block_size=16, **MIXERS[mixer])
  test_tok, test_tgt = mqar.batch(TEST_SEED, 0, test_size, seq_len, num_kv, vocab)
  test_idx = query_index(test_tgt, num_kv)
  test_ans = np.take_along_axis(test_tgt, test_idx, 1)
  params = model.init(jax.random.PRNGKey(seed), jnp.asarray(test_tok[:2]))["params"]
  cfg = ml_collections.ConfigDict(dict(name="adamw", learning_rate=lr, warmup_steps=max(1, max_steps // 20),
                                       schedule="cosine", weight_decay=0.1))
  tx = build_optimizer(cfg, max_steps)
  opt_state = tx.init(params)

  def loss_fn(p, tok, idx, ans):
    logits = model.apply({"params": p}, tok, idx, method=DecoderLM.logits)      # [B, K, V]
    return optax.softmax_cross_entropy_with_integer_labels(logits, ans).mean()

  @jax.jit
  def step(p, o, tok, idx, ans):
    loss, g = jax.value_and_grad(loss_fn)(p, tok, idx, ans)
    upd, o = tx.update(g, o, p)
    return optax.apply_updates(p, upd), o, loss

  @jax.jit
  def predict(p, tok, idx):
    return jnp.argmax(model.apply({"params": p}, tok, idx, method=DecoderLM.logits), -1)

  def evaluate(p):
    pred = np.concatenate([np.asarray(predict(p, test_tok[i:i + 256], test_idx[i:i + 256]))
                           for i in range(0, test_size, 256)])
    correct = pred == test_ans                                                   # [N, K] in query order
    return float(correct.mean()), correct.mean(0)

  best, best_order, best_step, losses = 0.0, np.zeros(num_kv), 0, []
  t0, done = time.perf_counter(), 0
  for s in range(1, max_steps + 1):
    tok, tgt = mqar.batch(TRAIN_SEED + 1000 * seed, (s - 1) * batch, batch, seq_len, num_kv, vocab)
    idx = query_index(tgt, num_kv)
    params, opt_state, loss = step(params, opt_state, tok, idx, np.take_along_axis(tgt, idx, 1))
    done = s
    if s % eval_every == 0 or s == max_steps:
      losses.append(float(loss))
      rec, order = evaluate(params)
      if rec > best:
        best, best_order, best_step = rec, order, s
      if log:
        tqdm.write(f"  {mixer} L={seq_len} d={width} lr={lr:.0e} step {s}: loss {float(loss):.3f} recall {rec:.3f}")
      if rec >= target:
        break
  return {"recall": best, "recall_by_query_order": best_order.tolist(), "best_step": best_step,
          "steps": done, "seconds": time.perf_counter() - t0, "final_loss": losses[-1] if losses else None,
          "lr": lr}


def run_grid(args) -> dict:
  out = {"config": {}, "runs": []}
  if os.path.exists(args.json):
    with open(args.json) as f:
      out = json.load(f)
  have = {(r["mixer"], r["seq_len"], r["width"]) for r in out["runs"]}
  out["config"] = {k: v for k, v in vars(args).items() if k not in ("json", "png")}
  out["config"]["platform"] = platform.platform()
  out["config"]["jax"] = jax.__version__
  max_steps = dict(tuple(int(v) for v in kv.split(":")) for kv in args.max_steps.split(","))
  grid = [(length, mixer, width) for length in args.seq_lens for mixer in args.mixers for width in args.widths
          if (mixer, length, width) not in have]
  bar = tqdm(grid, desc="recall grid")
  for length, mixer, width in bar:
    bar.set_postfix_str(f"L={length} {mixer} d={width}")
    num_kv = num_pairs(length)
    sweeps = []
    for lr in args.lrs:
      r = train_one(mixer, length, width, lr, vocab=args.vocab, batch=args.batch, max_steps=max_steps[length],
                    eval_every=args.eval_every, test_size=args.test_size, log=True)
      sweeps.append(r)
      tqdm.write(f"L={length} K={num_kv} {mixer:15s} d={width:4d} lr={lr:.0e}: recall {r['recall']:.3f} "
                 f"(step {r['best_step']}/{r['steps']}, {r['seconds']:.0f}s)")
      if r["recall"] >= 0.99:
        break
    best = max(sweeps, key=lambda r: r["recall"])
    model = DecoderLM(args.vocab, width, 2, block_size=16, **MIXERS[mixer])
    out["runs"].append({"mixer": mixer, "seq_len": length, "num_kv": num_kv, "width": width,
                        "state_floats": state_floats(model, length), "recall": best["recall"],
                        "recall_by_query_order": best["recall_by_query_order"],
                        "shortcut_recall": mqar.shortcut_recall(num_kv).tolist(), "best_lr": best["lr"],
                        "sweep": sweeps, "command_config": dict(out["config"])})  # runs may come from several calls
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


def plot(out: dict, path: str) -> None:
  """One column per L: recall vs model width (top) and vs decode state floats per sequence (bottom, Zoology's
  axis), one colour and marker per mixer, the no-binding level 1/K dotted."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  lengths = sorted({r["seq_len"] for r in out["runs"]})
  fig, axes = plt.subplots(2, len(lengths), figsize=(4.2 * len(lengths), 6.6), squeeze=False)
  mixers = sorted({r["mixer"] for r in out["runs"]})
  style = {m: (f"C{i}", "os^vDx*<>p"[i % 10]) for i, m in enumerate(mixers)}   # one colour and marker per mixer
  for col, length in enumerate(lengths):
    runs = [r for r in out["runs"] if r["seq_len"] == length]
    for row, key, label in ((0, "width", "model width"), (1, "state_floats", "decode state (floats / sequence)")):
      ax = axes[row][col]
      for mixer in sorted({r["mixer"] for r in runs}):
        rs = sorted((r for r in runs if r["mixer"] == mixer), key=lambda r: r[key])
        color, marker = style[mixer]
        ax.plot([r[key] for r in rs], [r["recall"] for r in rs], "-", color=color, marker=marker,
                markerfacecolor="none", markersize=9, label=mixer)
      ax.axhline(1.0 / num_pairs(length), color="gray", ls=":", lw=1)
      ax.set_xscale("log", base=2)
      ax.margins(x=0.15)
      ax.set_xlabel(label)
      ax.set_ylim(0, 1.02)
      if row == 0:
        ax.set_title(f"L={length}, K={num_pairs(length)} pairs (dotted: 1/K)")
        ax.legend(fontsize=7, loc="center right")
  for row in (0, 1):
    axes[row][0].set_ylabel("MQAR recall (test)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ints = lambda s: [int(v) for v in s.split(",")]
  ap.add_argument("--seq_lens", type=ints, default=[64, 128, 256])
  ap.add_argument("--widths", type=ints, default=[64, 128, 256])
  ap.add_argument("--mixers", type=lambda s: s.split(","), default=["softmax_conv", "linear_conv", "lightning_conv"])
  ap.add_argument("--lrs", type=lambda s: [float(v) for v in s.split(",")], default=[1e-3, 3e-3])
  ap.add_argument("--max_steps", default="64:1500,128:2000,256:3000", help="L:steps,...")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--vocab", type=int, default=8192)
  ap.add_argument("--eval_every", type=int, default=100)
  ap.add_argument("--test_size", type=int, default=512)
  ap.add_argument("--lightning_slopes", type=str, default="")
  ap.add_argument("--json", required=True)
  ap.add_argument("--png", default=None)
  args = ap.parse_args(argv)
  unknown = [m for m in args.mixers if m not in MIXERS]
  if unknown:
    raise ValueError(f"unknown mixer(s) {unknown}; known: {sorted(MIXERS)}")
  if args.lightning_slopes:
    slopes = tuple(float(v) for v in args.lightning_slopes.split(","))
    for name in [m for m in MIXERS if m.startswith("lightning")]:
      MIXERS[name] = dict(MIXERS[name], decay_slopes=slopes)
  out = run_grid(args)
  print(f"{'L':>4s} {'K':>3s} {'mixer':15s} {'width':>5s} {'state':>9s} {'recall':>7s} {'lr':>7s}  by query order")
  for r in sorted(out["runs"], key=lambda r: (r["seq_len"], r["mixer"], r["width"])):
    print(f"{r['seq_len']:4d} {r['num_kv']:3d} {r['mixer']:15s} {r['width']:5d} {r['state_floats']:9d} "
          f"{r['recall']:7.3f} {r['best_lr']:7.0e}  " + " ".join(f"{v:.2f}" for v in r["recall_by_query_order"]))
  if args.png:
    plot(out, args.png)
  return out


if __name__ == "__main__":
  main()
