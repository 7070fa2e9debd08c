"""Multi-query associative recall (MQAR), as in Zoology (Arora et al., 2023; HazyResearch/zoology).

Format 'zoology' (the default, Zoology's `multiquery_ar`): a sequence of length L starts with `num_kv` pairs
`k1 v1 ... kK vK` (distinct keys from ids [1, V/2), distinct values from [V/2, V)); the query region that
follows holds every key exactly once, at even offsets 2 g drawn without replacement with Zoology's power law
p(g) ~ a g^(a - 1) (g = 1..space, a = `power_a`, 0.01 in Zoology; small a puts queries close to the context).
The slot after a query key is 0 (or, with `random_non_queries`, every 0 is replaced by a uniform token of
[0, V), as Zoology does by default): the answer is never in the input. tokens = seq[:-1]; targets hold the value
of the queried key at the key's position, -1 elsewhere. Recall = accuracy on the targets.

Format 'legacy' (this project's first version, kept for comparison): each query key is followed by its value
and values are drawn with replacement, so earlier answers are visible and a model can reach
`elimination_recall` (about H(K)/K) by guessing among the values not yet asked, without recalling anything.
"""
from __future__ import annotations

import numpy as np

FORMATS = ("zoology", "legacy")
ZOOLOGY_POWER_A = 0.01
LEGACY_ALPHA = 0.1


def check_args(seq_len: int, num_kv: int, vocab_size: int, fmt: str = "zoology") -> None:
  """Raises ValueError naming the argument when (seq_len, num_kv, vocab_size, fmt) cannot make an example."""
  if fmt not in FORMATS:
    raise ValueError(f"unknown MQAR format {fmt!r}; expected one of {FORMATS}")
  if num_kv < 1:
    raise ValueError(f"num_kv must be >= 1, got {num_kv}")
  if vocab_size < 2 * num_kv + 2:
    raise ValueError(f"vocab_size {vocab_size} too small for {num_kv} distinct keys and values")
  if seq_len < 4 * num_kv:
    raise ValueError(f"seq_len {seq_len} must be >= 4 * num_kv = {4 * num_kv} (context + queries)")
  if fmt == "zoology" and seq_len % 2:
    raise ValueError(f"seq_len {seq_len} must be even in the zoology format")


def power_law(space: int, power_a: float) -> np.ndarray:
  """Zoology's gap distribution over slots 0..space-1: p(g) ~ a (g + 1)^(a - 1), float64 [space], sums to 1."""
  if not 0 < power_a <= 1:
    raise ValueError(f"power_a must be in (0, 1], got {power_a}")
  p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
  return p / p.sum()


def example(rng: np.random.Generator, seq_len: int, num_kv: int, vocab_size: int, *, fmt: str = "zoology",
            power_a: float | None = None, random_non_queries: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """One example: (tokens int32 [seq_len], targets int32 [seq_len], -1 where no query).

  power_a defaults to 0.01 (zoology) / 0.1 (legacy). random_non_queries (zoology only): fill the zeros with
  uniform tokens of [0, vocab_size) as Zoology's default does.
  """
  check_args(seq_len, num_kv, vocab_size, fmt)
  if fmt == "legacy":
    if random_non_queries:
      raise ValueError("random_non_queries is a zoology-format option; the legacy format has none")
    return _legacy_example(rng, seq_len, num_kv, vocab_size, LEGACY_ALPHA if power_a is None else power_a)
  a = ZOOLOGY_POWER_A if power_a is None else power_a
  half = vocab_size // 2
  keys = rng.choice(np.arange(1, half), num_kv, replace=False)
  vals = rng.choice(np.arange(half, vocab_size), num_kv, replace=False)
  ctx = 2 * num_kv
  space = (seq_len - ctx) // 2
  gaps = rng.choice(space, num_kv, replace=False, p=power_law(space, a))
  seq = np.zeros(seq_len + 1, np.int64)
  seq[0:ctx:2], seq[1:ctx:2] = keys, vals
  seq[ctx + 2 * gaps] = keys                 # key k_i queried at gap g_i: the order of queries is random
  tokens = seq[:-1]
  targets = np.full(seq_len, -1, np.int32)
  targets[ctx + 2 * gaps] = vals
  if random_non_queries:
    zero = tokens == 0
    tokens[zero] = rng.integers(0, vocab_size, int(zero.sum()))
  return tokens.astype(np.int32), targets


def _legacy_example(rng, seq_len, num_kv, vocab_size, alpha):
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


def batch(seed: int, index: int, size: int, seq_len: int, num_kv: int, vocab_size: int, *, fmt: str = "zoology",
          power_a: float | None = None, random_non_queries: bool = False, num_examples: int | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
  """Examples index..index+size-1 of the stream with `seed` (deterministic; example i depends on (seed, i) only).

  num_examples: a fixed set of that many examples (example i is example i mod num_examples), as Zoology trains;
  None streams fresh examples. Returns tokens, targets int32 [size, seq_len].
  """
  if num_examples is not None and num_examples < 1:
    raise ValueError(f"num_examples must be >= 1 or None, got {num_examples}")
  toks, tgts = [], []
  for i in range(index, index + size):
    j = i if num_examples is None else i % num_examples
    t, y = example(np.random.default_rng([seed, j]), seq_len, num_kv, vocab_size, fmt=fmt, power_a=power_a,
                   random_non_queries=random_non_queries)
    toks.append(t)
    tgts.append(y)
  return np.stack(toks), np.stack(tgts)


def elimination_recall(num_kv: int) -> np.ndarray:
  """Legacy format: recall of the shortcut that guesses uniformly among the context values not yet queried.

  The j-th query (0-based) has num_kv - j candidates left: recall 1 / (num_kv - j); the mean over queries is
  H(num_kv) / num_kv (0.52 for 4 pairs, 0.34 for 8; a little more since legacy values repeat). A model at this
  level has learnt which values were already asked, not which value belongs to which key. Float64 [num_kv].
  """
  if num_kv < 1:
    raise ValueError(f"num_kv must be >= 1, got {num_kv}")
  return 1.0 / (num_kv - np.arange(num_kv, dtype=np.float64))


def shortcut_recall(num_kv: int, fmt: str = "zoology") -> np.ndarray:
  """Best recall per query order without key-value association, float64 [num_kv].

  zoology: answers are never in the input, so the best guess is a uniform context value: 1 / num_kv for every
  query. legacy: `elimination_recall`.
  """
  if fmt not in FORMATS:
    raise ValueError(f"unknown MQAR format {fmt!r}; expected one of {FORMATS}")
  if fmt == "legacy":
    return elimination_recall(num_kv)
  if num_kv < 1:
    raise ValueError(f"num_kv must be >= 1, got {num_kv}")
  return np.full(num_kv, 1.0 / num_kv)


def recall_by_query_order(targets: np.ndarray, predictions: np.ndarray, num_kv: int) -> np.ndarray:
  """Recall of the j-th query of each sequence (in sequence order), j = 0..num_kv-1.

  Args: targets int [B, L] (-1 where no query), predictions int [B, L]. Returns float64 [num_kv]; compare with
  `shortcut_recall(num_kv, fmt)`.
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
