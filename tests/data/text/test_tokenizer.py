import numpy as np
import pytest

from mtl.data.text import tokenizer as tk


def test_roundtrip_and_specials():
  t = tk.ByteTokenizer(num_task_tokens=4)
  assert t.vocab_size == 272 and t.vocab_size % 16 == 0
  ids = t.encode("héllo")
  assert len(ids) == 6 and all(0 <= i < 256 for i in ids)
  assert t.decode(ids + [tk.EOS, 65]) == "héllo"
  assert t.decode([tk.PAD, 72, tk.SEP, 105]) == "Hi"
  with pytest.raises(ValueError, match="task index"):
    t.task_token(4)


def test_pack_prompt_answer_targets():
  tokens, targets = tk.pack_prompt_answer([10, 11], [20, 21, 22], 300, 10)
  np.testing.assert_array_equal(
      tokens, [300, 10, 11, tk.SEP, 20, 21, 22, tk.EOS, tk.PAD, tk.PAD])
  # Only positions that predict answer bytes and EOS carry targets.
  np.testing.assert_array_equal(
      targets, [-1, -1, -1, 20, 21, 22, tk.EOS, -1, -1, -1])


def test_pack_prompt_answer_truncates():
  tokens, targets = tk.pack_prompt_answer(list(range(10)), [50, 51, 52], 300, 8)
  assert tokens.shape == (8,)
  assert tokens[-1] == tk.EOS and tokens[-2] == tk.SEP
  assert (targets >= 0).sum() == 1 and targets[-2] == tk.EOS


def test_pack_lm():
  tokens, targets = tk.pack_lm([1, 2, 3, 4, 5], 300, 4)
  np.testing.assert_array_equal(tokens, [300, 1, 2, 3])
  np.testing.assert_array_equal(targets, [1, 2, 3, 4])
  tokens, targets = tk.pack_lm([1], 300, 4)
  np.testing.assert_array_equal(targets, [1, -1, -1, -1])
  with pytest.raises(ValueError):
    tk.pack_lm([1], 300, 1)
