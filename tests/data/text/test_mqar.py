import numpy as np
import pytest

from mtl.data.text import mqar


@pytest.mark.parametrize("seq_len,num_kv,vocab", [(32, 4, 32), (64, 8, 128)])
def test_every_query_asks_a_context_key(seq_len, num_kv, vocab):
  for seed in range(5):
    tokens, targets = mqar.example(np.random.default_rng(seed), seq_len, num_kv, vocab)
    assert tokens.shape == targets.shape == (seq_len,)
    ctx = tokens[:2 * num_kv].reshape(num_kv, 2)
    table = dict(ctx.tolist())
    assert len(table) == num_kv                      # distinct keys
    assert ctx[:, 0].max() < vocab // 2 <= ctx[:, 1].min()
    pos = np.nonzero(targets >= 0)[0]
    assert len(pos) == num_kv
    assert pos.min() >= 2 * num_kv
    for p in pos:
      assert targets[p] == table[tokens[p]]           # value of the queried key
      if p + 1 < seq_len:
        assert tokens[p + 1] == targets[p]            # as in Zoology: value follows


def test_batch_is_deterministic_and_args_checked():
  a = mqar.batch(0, 10, 3, 32, 4, 32)
  b = mqar.batch(0, 10, 3, 32, 4, 32)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], mqar.batch(1, 10, 3, 32, 4, 32)[0])
  with pytest.raises(ValueError, match="seq_len"):
    mqar.example(np.random.default_rng(0), 10, 4, 32)
  with pytest.raises(ValueError, match="vocab_size"):
    mqar.example(np.random.default_rng(0), 64, 8, 16)


def test_recall_by_query_order_and_elimination_shortcut():
  num_kv = 4
  toks, tgts = mqar.batch(0, 0, 2000, 32, num_kv, 512)  # 256 values: repeated values (which help the shortcut) are rare
  np.testing.assert_allclose(mqar.recall_by_query_order(tgts, tgts, num_kv), np.ones(num_kv))
  # The shortcut: guess uniformly among the context values whose keys were not queried yet.
  rng = np.random.default_rng(0)
  guess = np.full_like(tgts, -2)
  for b in range(len(toks)):
    remaining = list(toks[b, 1:2 * num_kv:2])
    for p in np.nonzero(tgts[b] >= 0)[0]:
      guess[b, p] = remaining[rng.integers(len(remaining))]
      remaining.remove(tgts[b, p])  # the answer appears next in the input, so it is known to be used
  got = mqar.recall_by_query_order(tgts, guess, num_kv)
  np.testing.assert_allclose(got, mqar.elimination_recall(num_kv), atol=0.04)
  np.testing.assert_allclose(mqar.elimination_recall(4).mean(), (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
  with pytest.raises(ValueError, match="num_kv=3"):
    mqar.recall_by_query_order(tgts, tgts, 3)
