r"""Recall of a trained MQAR checkpoint by query order, against the shortcut level.

  python -m experiments.mqar_probe --workdir /tmp/runs/mqar_softmax [--num_sequences 512]

Greedy predictions of the checkpoint on fresh MQAR sequences (the run's dataset name gives L, K, V); prints
recall of the 1st..K-th query of each sequence next to `mtl.data.text.mqar.shortcut_recall(K, fmt)`: in the
legacy format the recall of guessing among the context values not yet queried (rises from 1/K to 1), in
Zoology's format 1/K. A model that has learnt associative recall is flat near 1.
"""
from __future__ import annotations

import argparse
import json

import jax.numpy as jnp
import numpy as np

from mtl.data.text import datasets as text_datasets, mqar
from mtl.train import loop


def probe(workdir: str, num_sequences: int = 512, seed: int = 987654) -> dict:
  exp, state, step = loop.restore_experiment(workdir)
  spec = text_datasets.mqar_spec(exp.config.dataset.name)
  if spec is None:
    raise ValueError(f"run {workdir!r} was not trained on MQAR (dataset {exp.config.dataset.name!r})")
  num_kv = spec.num_kv
  tokens, targets = mqar.batch(seed, 0, num_sequences, spec.seq_len, num_kv, spec.vocab_size, fmt=spec.fmt)
  logits = next(iter(exp.model.apply({"params": state.params}, jnp.asarray(tokens)).values()))
  pred = np.asarray(jnp.argmax(logits, -1))
  by_order = mqar.recall_by_query_order(targets, pred, num_kv)
  return {"workdir": workdir, "step": int(step), "recall": float(np.mean(by_order)),
          "recall_by_query_order": by_order.tolist(), "format": spec.fmt,
          "shortcut_recall": mqar.shortcut_recall(num_kv, spec.fmt).tolist()}


def main(argv: list[str] | None = None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--num_sequences", type=int, default=512)
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  out = probe(args.workdir, args.num_sequences)
  print(f"{out['workdir']} step {out['step']}: recall {out['recall']:.3f}")
  print("query order          " + " ".join(f"{j + 1:>6d}" for j in range(len(out["recall_by_query_order"]))))
  print("recall               " + " ".join(f"{r:6.3f}" for r in out["recall_by_query_order"]))
  print("shortcut level       " + " ".join(f"{r:6.3f}" for r in out["shortcut_recall"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
