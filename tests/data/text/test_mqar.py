import numpy as np
import pytest

from mtl.data.text import datasets, mqar


def _check_common(tokens, targets, seq_len, num_kv, vocab):
  assert tokens.shape == targets.shape == (seq_len,)
  assert tokens.dtype == targets.dtype == np.int32
  ctx = tokens[:2 * num_kv].reshape(num_kv, 2)
  table = dict(ctx.tolist())
  assert len(table) == num_kv                      # distinct keys
  assert ctx[:, 0].min() >= 1 and ctx[:, 0].max() < vocab // 2 <= ctx[:, 1].min() and ctx[:, 1].max() < vocab
  pos = np.nonzero(targets >= 0)[0]
  assert len(pos) == num_kv and pos.min() >= 2 * num_kv
  assert sorted(tokens[pos].tolist()) == sorted(table)   # every key is queried exactly once
  for p in pos:
    assert targets[p] == table[tokens[p]]                 # the value of the queried key
  return ctx, pos


@pytest.mark.parametrize("seq_len,num_kv,vocab", [(32, 4, 32), (64, 16, 8192), (16, 4, 10)])
def test_zoology_format_query_holds_key_only_and_values_are_distinct(seq_len, num_kv, vocab):
  for seed in range(20):
    tokens, targets = mqar.example(np.random.default_rng(seed), seq_len, num_kv, vocab)
    ctx, pos = _check_common(tokens, targets, seq_len, num_kv, vocab)
    assert len(set(ctx[:, 1].tolist())) == num_kv       # distinct values (Zoology draws them without replacement)
    assert np.all(pos % 2 == 0)                          # queries at even offsets of the query region
    # The answer is never visible: every non-key slot of the query region is 0, no value occurs after the context.
    rest = np.ones(seq_len, bool)
    rest[:2 * num_kv] = False
    rest[pos] = False
    np.testing.assert_array_equal(tokens[rest], 0)
    assert not np.isin(tokens[2 * num_kv:], ctx[:, 1]).any()


def test_zoology_random_non_queries_fills_only_the_zeros():
  rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
  plain, tgt = mqar.example(rng_a, 128, 8, 64)
  rand, tgt2 = mqar.example(rng_b, 128, 8, 64, random_non_queries=True)
  np.testing.assert_array_equal(tgt, tgt2)
  keep = (plain != 0)
  np.testing.assert_array_equal(rand[keep], plain[keep])
  assert (rand[~keep] != 0).mean() > 0.9 and rand.max() < 64
  with pytest.raises(ValueError, match="random_non_queries"):
    mqar.example(np.random.default_rng(0), 32, 4, 32, fmt="legacy", random_non_queries=True)


def test_zoology_gaps_follow_the_power_law():
  # 2 pairs in L=44: space = 20 gap slots; with a = 0.01 the first slots take most queries.
  seq_len, num_kv, space = 44, 2, 20
  counts = np.zeros(space)
  for s in range(4000):
    _, targets = mqar.example(np.random.default_rng(s), seq_len, num_kv, 64)
    counts[(np.nonzero(targets >= 0)[0] - 2 * num_kv) // 2] += 1
  # Reference: the first of two draws without replacement is p; the second is p_j * sum_{i != j} p_i / (1 - p_i).
  p = 0.01 * np.arange(1, space + 1, dtype=np.float64) ** (0.01 - 1)
  p /= p.sum()
  second = p * np.array([sum(p[i] / (1 - p[i]) for i in range(space) if i != j) for j in range(space)])
  want = (p + second) / 2
  np.testing.assert_allclose(counts / counts.sum(), want, atol=0.015)
  assert want[0] > 5 * want[-1]
  np.testing.assert_allclose(mqar.power_law(space, 1.0), np.full(space, 1 / space))   # a = 1: uniform
  with pytest.raises(ValueError, match="power_a"):
    mqar.power_law(10, 0.0)


def test_legacy_format_shows_the_answer_after_the_query():
  for seed in range(5):
    tokens, targets = mqar.example(np.random.default_rng(seed), 64, 8, 128, fmt="legacy")
    _, pos = _check_common(tokens, targets, 64, 8, 128)
    for p in pos:
      if p + 1 < 64:
        assert tokens[p + 1] == targets[p]            # the value follows: the shortcut's source


def test_batch_is_deterministic_fixed_set_repeats_and_args_checked():
  a = mqar.batch(0, 10, 3, 32, 4, 32)
  b = mqar.batch(0, 10, 3, 32, 4, 32)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], mqar.batch(1, 10, 3, 32, 4, 32)[0])
  fixed = mqar.batch(0, 0, 10, 32, 4, 32, num_examples=5)[0]
  np.testing.assert_array_equal(fixed[:5], fixed[5:])
  assert len({r.tobytes() for r in fixed}) == 5
  with pytest.raises(ValueError, match="seq_len"):
    mqar.example(np.random.default_rng(0), 10, 4, 32)
  with pytest.raises(ValueError, match="even"):
    mqar.example(np.random.default_rng(0), 33, 4, 32)
  with pytest.raises(ValueError, match="vocab_size"):
    mqar.example(np.random.default_rng(0), 64, 8, 16)
  with pytest.raises(ValueError, match="format"):
    mqar.example(np.random.default_rng(0), 64, 8, 128, fmt="zoo")
  with pytest.raises(ValueError, match="num_examples"):
    mqar.batch(0, 0, 2, 32, 4, 32, num_examples=0)


def test_recall_by_query_order_and_shortcut_levels():
  num_kv = 4
  toks, tgts = mqar.batch(0, 0, 2000, 32, num_kv, 512, fmt="legacy")  # 256 values: repeats are rare
  np.testing.assert_allclose(mqar.recall_by_query_order(tgts, tgts, num_kv), np.ones(num_kv))
  # The legacy shortcut: guess uniformly among the context values whose keys were not queried yet.
  rng = np.random.default_rng(0)
  guess = np.full_like(tgts, -2)
  for b in range(len(toks)):
    remaining = list(toks[b, 1:2 * num_kv:2])
    for p in np.nonzero(tgts[b] >= 0)[0]:
      guess[b, p] = remaining[rng.integers(len(remaining))]
      remaining.remove(tgts[b, p])  # the answer appears next in the input, so it is known to be used
  got = mqar.recall_by_query_order(tgts, guess, num_kv)
  np.testing.assert_allclose(got, mqar.shortcut_recall(num_kv, "legacy"), atol=0.04)
  np.testing.assert_allclose(mqar.elimination_recall(4).mean(), (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
  # Zoology format: the same strategy has nothing to eliminate (answers never appear): 1/K at every order.
  toks, tgts = mqar.batch(0, 0, 2000, 32, num_kv, 512)
  guess = np.full_like(tgts, -2)
  for b in range(len(toks)):
    remaining = list(toks[b, 1:2 * num_kv:2])
    for p in np.nonzero(tgts[b] >= 0)[0]:
      guess[b, p] = remaining[rng.integers(len(remaining))]
      remaining = [v for v in remaining if v not in toks[b, p + 1:p + 2]]   # no value ever follows a query
  np.testing.assert_allclose(mqar.recall_by_query_order(tgts, guess, num_kv), mqar.shortcut_recall(num_kv),
                             atol=0.04)
  with pytest.raises(ValueError, match="num_kv=3"):
    mqar.recall_by_query_order(tgts, tgts, 3)


def test_dataset_names_select_format_and_fixed_train_set():
  s = datasets.mqar_spec("mqar-64-4-8192-n100")
  assert (s.seq_len, s.num_kv, s.vocab_size, s.fmt, s.num_train) == (64, 4, 8192, "zoology", 100)
  assert datasets.mqar_spec("mqar_legacy").fmt == "legacy"
  assert datasets.mqar_spec("mqar").num_train is None
  assert datasets.get_info("mqar-64-4-8192-n100").splits["train"] == 100
  b = next(datasets.make_loader("mqar-32-4-32", "train", batch_size=8))
  for t, y in zip(b["tokens"], b["mqar"]):
    pos = np.nonzero(y >= 0)[0]
    assert np.all(t[pos[pos + 1 < 32] + 1] == 0)      # default is Zoology's format
  b = next(datasets.make_loader("mqar_legacy-32-4-32", "train", batch_size=8))
  pos = np.nonzero(b["mqar"][0] >= 0)[0]
  assert b["tokens"][0, pos[0] + 1] == b["mqar"][0, pos[0]]
  # A fixed train set of 6 examples: two epochs hold the same 6 sequences (reshuffled).
  ld = datasets.make_loader("mqar-32-4-32-n6", "train", batch_size=6, seed=1)
  e1, e2 = next(ld)["tokens"], next(ld)["tokens"]
  assert {r.tobytes() for r in e1} == {r.tobytes() for r in e2}
  # The test split is disjoint from the train set's examples.
  test = next(datasets.make_loader("mqar-32-4-32-n6", "test", batch_size=6))["tokens"]
  assert not {r.tobytes() for r in test} & {r.tobytes() for r in e1}
  with pytest.raises(ValueError, match="fixed train set"):
    datasets.get_info("mqar-32-4-32-n0")
