import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench_recall
from mtl.data.text import mqar
from mtl.models.lm import DecoderLM


def test_query_index_and_state_sizes():
  _, tgt = mqar.batch(0, 0, 5, 32, 2, 64)
  idx = bench_recall.query_index(tgt, 2)
  assert idx.shape == (5, 2) and np.all(np.take_along_axis(tgt, idx, 1) >= 0)
  with pytest.raises(ValueError, match="num_kv"):
    bench_recall.query_index(tgt, 3)
  kw = lambda name: dict(bench_recall.MIXERS[name])
  # softmax: a K and V cache of L x D per block; + conv history (K-1) x D.
  assert bench_recall.state_floats(DecoderLM(64, 32, 2, **kw("softmax_conv")), 64) == 2 * (2 * 64 * 32 + 2 * 32)
  # Based linear attention, 1 head, feature_dim 16: (1 + 16 + 256) x (Dh + 1) per block, independent of L.
  lin = DecoderLM(64, 32, 2, **kw("linear"))
  assert bench_recall.state_floats(lin, 64) == bench_recall.state_floats(lin, 512) == 2 * 273 * 33
  # lightning, 2 heads of Dh = 16: a [2 Dh, Dh] state per head with LRPE, [Dh, Dh] without (+ conv history);
  # equal to the float entries of the model's own decode cache.
  for name, per_head in (("lightning_conv", 2 * 16 * 16), ("lightning_id_conv", 16 * 16)):
    m = DecoderLM(64, 32, 2, **kw(name))
    assert bench_recall.state_floats(m, 64) == 2 * (2 * per_head + 2 * 32)
    cache = m.apply({}, 1, 64, method=DecoderLM.init_cache)
    floats = sum(a.size for a in jax.tree.leaves(cache) if jnp.issubdtype(a.dtype, jnp.floating))
    assert floats == bench_recall.state_floats(m, 64)
  assert bench_recall.num_pairs(64) == 4 and bench_recall.num_pairs(256) == 16


def test_grid_writes_json_png_and_skips_finished_runs(tmp_path):
  js, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
  argv = ["--json", js, "--png", png, "--seq_lens", "32", "--widths", "16", "--mixers", "conv",
          "--lrs", "1e-2", "--max_steps", "32:3", "--batch", "4", "--vocab", "64", "--eval_every", "2",
          "--test_size", "8"]
  out = bench_recall.main(argv)
  (run,) = out["runs"]
  assert (run["mixer"], run["seq_len"], run["num_kv"], run["width"]) == ("conv", 32, 2, 16)
  assert 0.0 <= run["recall"] <= 1.0 and len(run["recall_by_query_order"]) == 2
  assert run["shortcut_recall"] == [0.5, 0.5] and run["sweep"][0]["steps"] == 3
  assert json.load(open(js))["runs"] == out["runs"]
  assert (tmp_path / "r.png").stat().st_size > 1000
  again = bench_recall.main(argv)                      # nothing left to run: the same single row
  assert len(again["runs"]) == 1
  with pytest.raises(ValueError, match="unknown mixer"):
    bench_recall.main(argv[:8] + ["--mixers", "mamba"] + argv[10:])
