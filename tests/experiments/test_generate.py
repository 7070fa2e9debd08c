"""experiments/generate.py: loading a checkpoint builds the model with every saved LM field (GQA, CLA, RoPE...),
and the parameters-only export reads back equal (float32) or bf16-rounded."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import generate
from mtl.models.lm import DecoderLM
from mtl.train.checkpoint import Checkpointer

LM = dict(vocab_size=272, dim=32, depth=2, num_heads=4, mlp_ratio=2.0, mixer="softmax", block_size=16,
          num_kv_heads=2, kv_share=2, rope=False, learned_positions=64, decay_slopes=None)
TASKS = ("definition", "reverse", "pycode")


def _checkpoint(tmp_path):
  model = DecoderLM(**LM, tasks=TASKS)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  cfg = ml_collections.ConfigDict({"model": {"lm": LM}, "dataset": {"tasks": list(TASKS)}})
  ck = Checkpointer(str(tmp_path / "ck"), every_steps=1, async_save=False)
  ck.save(7, {"params": params, "step": 7}, {}, cfg.to_json())
  ck.wait()
  return str(tmp_path / "ck"), model, params


def _same(a, b, **tol):
  for (pa, x), (pb, y) in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]):
    assert pa == pb
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_load_keeps_every_lm_field(tmp_path):
  ck, model, params = _checkpoint(tmp_path)
  loaded, got = generate.load(ck)
  assert (loaded.num_kv_heads, loaded.kv_share, loaded.rope, loaded.learned_positions) == (2, 2, False, 64)
  assert tuple(loaded.tasks) == TASKS
  _same(got, params, rtol=0, atol=0)
  x = jnp.arange(12, dtype=jnp.int32)[None] % 200
  _same(loaded.apply({"params": got}, x), model.apply({"params": params}, x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("bfloat16", 2 ** -8)])
def test_export_round_trip(tmp_path, dtype, tol):
  ck, model, params = _checkpoint(tmp_path)
  out = generate.main(["--checkpoint_dir", ck, "--export_params", str(tmp_path / "ex"), "--export_dtype", dtype])
  assert out is None
  meta = json.loads((tmp_path / "ex" / generate.LM_FILE).read_text())
  assert meta["step"] == 7 and meta["dtype"] == dtype and meta["lm"]["num_kv_heads"] == 2
  loaded, got = generate.load(str(tmp_path / "ex"))
  assert loaded.num_kv_heads == 2 and loaded.kv_share == 2
  _same(got, params, rtol=tol, atol=1e-30)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(got))
  with pytest.raises(ValueError, match="exported parameter set"):
    generate.load(str(tmp_path / "ex"), step=3)


def test_bad_export_arguments_are_named(tmp_path):
  with pytest.raises(ValueError, match="needs --checkpoint_dir"):
    generate.main(["--export_params", str(tmp_path / "x")])
  ck, _, _ = _checkpoint(tmp_path)
  with pytest.raises(ValueError, match="export_dtype"):
    generate.main(["--checkpoint_dir", ck, "--export_params", str(tmp_path / "x"), "--export_dtype", "int8"])
  with pytest.raises(ValueError, match="no checkpoint"):
    generate.load(str(tmp_path))
