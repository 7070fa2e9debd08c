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
