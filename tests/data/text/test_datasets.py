import os

import numpy as np
import pytest

from mtl.data.text import datasets, gcide, tokenizer


def test_mqar_loader_shapes_resume_and_splits():
  info = datasets.get_info("mqar-32-4-32")
  assert info.input_shape == (32,) and info.tasks[0].num_outputs == 32
  ld = datasets.make_loader("mqar-32-4-32", "train", batch_size=4, seed=0)
  b1 = next(ld)
  state = ld.get_state()
  b2 = next(ld)
  ld2 = datasets.make_loader("mqar-32-4-32", "train", batch_size=4, seed=0)
  ld2.set_state(state)
  np.testing.assert_array_equal(next(ld2)["tokens"], b2["tokens"])
  assert b1["tokens"].shape == b1["mqar"].shape == (4, 32)
  np.testing.assert_array_equal(b1["mask/mqar"], 1.0)
  val = next(datasets.make_loader("mqar-32-4-32", "validation", batch_size=4))
  assert not np.array_equal(val["tokens"], b1["tokens"])
  # Two hosts read the halves of the global batch.
  h0 = next(datasets.make_loader("mqar-32-4-32", "train", batch_size=2, shard_index=0, shard_count=2))
  h1 = next(datasets.make_loader("mqar-32-4-32", "train", batch_size=2, shard_index=1, shard_count=2))
  np.testing.assert_array_equal(np.concatenate([h0["tokens"], h1["tokens"]]), b1["tokens"])


def test_bad_names():
  with pytest.raises(ValueError, match="unknown text dataset"):
    datasets.get_info("wikitext")
  with pytest.raises(ValueError, match="seq_len"):
    datasets.get_info("mqar-8-4-32")
  with pytest.raises(ValueError, match="unknown task"):
    datasets.make_loader("mqar", "train", batch_size=2, tasks=["foo"])


@pytest.mark.skipif(not os.path.exists(gcide.DICT_PATH), reason="dict-gcide not installed")
def test_gcide_text_batch():
  ld = datasets.make_loader("gcide_text", "validation", batch_size=6, shuffle=False, num_epochs=1)
  b = next(ld)
  tok = datasets.TOKENIZER
  assert b["tokens"].shape == (6, datasets.GCIDE_SEQ_LEN)
  for r in range(6):
    task = datasets.GCIDE_TASKS[r % 3]
    assert b["mask/" + task][r] == 1.0 and b["tokens"][r, 0] == tok.task_token(r % 3)
    for other in datasets.GCIDE_TASKS:
      if other != task:
        assert (b[other][r] < 0).all()
    tgt = b[task][r]
    pos = np.nonzero(tgt >= 0)[0]
    np.testing.assert_array_equal(tgt[pos], b["tokens"][r, pos + 1][: len(pos)] if pos[-1] + 1 < 128
                                  else np.append(b["tokens"][r, pos[:-1] + 1], tgt[pos[-1]]))
  # definition row: the word, SEP, then the definition.
  word, definition = gcide.split_pairs(gcide.load_pairs(), "validation")[0]
  row = b["tokens"][0].tolist()
  sep = row.index(tokenizer.SEP)
  assert tok.decode(row[1:sep]) == word
  assert tok.decode(row[sep + 1:]) == definition[: 128 - 3 - len(word)]
