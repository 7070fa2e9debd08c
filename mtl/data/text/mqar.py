"""Multi-query associative recall (MQAR), as in Zoology (Arora et al., 2023).

A sequence starts with `num_kv` key-value pairs `k1 v1 k2 v2 ...` (distinct
keys from ids [1, vocab/2), values from [vocab/2, vocab)); the rest holds each
key once more at an even offset of the query region, followed by its value,
all other positions are 0. Query gaps follow Zoology's power law
p(g) ~ g^(alpha - 1). The model reads inputs = seq[:-1] and must predict the
value right after each queried key: targets = seq[1:] at those positions, -1
elsewhere. Accuracy on the targets measures recall.
"""
from __future__ import annotations

import numpy as np


def check_args(seq_len: int, num_kv: int, vocab_size: int) -> None:
  if num_kv < 1:
    raise ValueError(f"num_kv must be >= 1, got {num_kv}")
  if vocab_size < 2 * num_kv + 2:
    raise ValueError(f"vocab_size {vocab_size} too small for {num_kv} distinct "
                     f"keys and values")
  if seq_len < 4 * num_kv:
    raise ValueError(f"seq_len {seq_len} must be >= 4 * num_kv = {4 * num_kv} "
                     f"(context + queries)")


def example(rng: np.random.Generator, seq_len: int, num_kv: int,
            vocab_size: int, alpha: float = 0.1
            ) -> tuple[np.ndarray, np.ndarray]:
  """One example: (tokens int32 [seq_len], targets int32 [seq_len])."""
  check_args(seq_len, num_kv, vocab_size)
  half = vocab_size // 2
  keys = rng.choice(np.arange(1, half), num_kv, replace=False)
  vals = rng.choice(np.arange(half, vocab_size), num_kv, replace=True)
  ctx = np.stack([keys, vals], 1).reshape(-1)
  q_len = seq_len + 1 - 2 * num_kv           # query region of seq (len L + 1)
  slots = np.arange(q_len // 2)               # pair slot s at offsets 2s, 2s+1
  p = alpha * (slots + 1.0) ** (alpha - 1)
  gaps = rng.choice(slots, num_kv, replace=False, p=p / p.sum())
  order = rng.permutation(num_kv)
  query = np.zeros(q_len, np.int64)
  query[2 * gaps] = keys[order]
  query[2 * gaps + 1] = vals[order]
  seq = np.concatenate([ctx, query])          # [seq_len + 1]
  tokens = seq[:-1].astype(np.int32)
  targets = np.full(seq_len, -1, np.int32)
  pos = 2 * num_kv + 2 * gaps                 # key positions in tokens
  targets[pos] = seq[pos + 1]
  return tokens, targets


def batch(seed: int, index: int, size: int, seq_len: int, num_kv: int,
          vocab_size: int, alpha: float = 0.1
          ) -> tuple[np.ndarray, np.ndarray]:
  """Examples index..index+size-1 of the stream with `seed` (deterministic).

  Returns tokens, targets int32 [size, seq_len].
  """
  toks, tgts = [], []
  for i in range(index, index + size):
    t, y = example(np.random.default_rng([seed, i]), seq_len, num_kv,
                   vocab_size, alpha)
    toks.append(t)
    tgts.append(y)
  return np.stack(toks), np.stack(tgts)


def elimination_recall(num_kv: int) -> np.ndarray:
  """Recall of the shortcut that guesses uniformly among the context values not yet queried, per query order.

  The j-th query (0-based) in a sequence has num_kv - j candidates left: recall 1 / (num_kv - j); the mean over
  queries is H(num_kv) / num_kv (0.52 for 4 pairs, 0.34 for 8; a little more when values repeat, since they are
  drawn with replacement). A model at this level has learnt which values were already asked, not which value
  belongs to which key. Returns float64 [num_kv].
  """
  if num_kv < 1:
    raise ValueError(f"num_kv must be >= 1, got {num_kv}")
  return 1.0 / (num_kv - np.arange(num_kv, dtype=np.float64))


def recall_by_query_order(targets: np.ndarray, predictions: np.ndarray, num_kv: int) -> np.ndarray:
  """Recall of the j-th query of each sequence (in sequence order), j = 0..num_kv-1.

  Args: targets int [B, L] (-1 where no query), predictions int [B, L]. Returns float64 [num_kv]; compare with
  `elimination_recall(num_kv)`.
  """
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  if targets.shape != predictions.shape or targets.ndim != 2:
    raise ValueError(f"targets {targets.shape} and predictions {predictions.shape} must both be [B, L]")
  mask = targets >= 0
  counts = mask.sum(1)
  if np.any(counts != num_kv):
    raise ValueError(f"every sequence must hold num_kv={num_kv} queries; got counts {sorted(set(counts.tolist()))}")
  order = np.cumsum(mask, 1) - 1  # query index at each query position
  correct = (predictions == targets) & mask
  return np.array([correct[mask & (order == j)].mean() for j in range(num_kv)], np.float64)
