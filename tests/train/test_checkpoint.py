"""Checkpointer: exact round trip, refusal of non-finite states, clear errors for broken checkpoints."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl import sharding
from mtl.train import checkpoint as ckpt_lib


def _state(seed=0):
  k = jax.random.PRNGKey(seed)
  return {"params": {"w": jax.random.normal(k, (4, 8)), "b": jnp.arange(8, dtype=jnp.float32)},
          "step": jnp.asarray(3, jnp.int32)}


def _abstract(state, mesh=None):
  mesh = mesh or sharding.make_mesh({"data": -1})
  return ckpt_lib.abstract_like(state, sharding.tree_shardings(state, mesh))


def test_round_trip_with_data_state_and_config(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=2, async_save=False)
  state = _state()
  assert not ck.maybe_save(1, state, None, '{"a": 1}')
  assert ck.maybe_save(2, state, b"\x00grain-state", '{"a": 1}')
  restored, data_state, config, step = ck.restore(_abstract(state))
  assert step == 2 and config == {"a": 1} and data_state == b"\x00grain-state"
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ck.close()


def test_restore_onto_other_mesh(tmp_path):
  mesh8 = sharding.make_mesh({"fsdp": -1})
  state = _state()
  sh = sharding.tree_shardings(state, mesh8, [(".*w", "fsdp")])
  state8 = jax.device_put(state, sh)
  assert state8["params"]["w"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, async_save=False)
  ck.save(1, state8, None, "{}")
  mesh1 = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  restored, *_ = ck.restore(_abstract(state, mesh1))
  assert len(restored["params"]["w"].devices()) == 1
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.asarray(state["params"]["w"]))
  ck.close()


def test_non_finite_state_is_refused_and_previous_kept(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, async_save=False)
  good = _state()
  ck.save(1, good, None, "{}")
  bad = jax.tree_util.tree_map(lambda x: x, good)
  bad["params"]["w"] = bad["params"]["w"].at[0, 0].set(jnp.nan)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"non-finite values in \[\"\['params'\]\['w'\]\"\]"):
    ck.save(2, bad, None, "{}")
  assert ck.all_steps() == [1]
  ck.close()


def test_truncated_checkpoint_gives_named_error(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, async_save=False)
  state = _state()
  ck.save(1, state, None, "{}")
  ck.save(2, state, None, "{}")
  ck.close()
  # Truncate every array file of step 2.
  for root, _, files in os.walk(tmp_path / "2" / "state"):
    for f in files:
      p = os.path.join(root, f)
      if os.path.getsize(p) > 0 and not f.endswith("json") and "_METADATA" not in f:
        with open(p, "r+b") as fh:
          fh.truncate(1)
  shutil.rmtree(tmp_path / "2" / "state" / "_METADATA", ignore_errors=True)
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, async_save=False)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"checkpoint step 2 .* is unreadable.*Other steps here: \[1\]"):
    ck.restore(_abstract(state))
  restored, *_ = ck.restore(_abstract(state), step=1)
  np.testing.assert_array_equal(np.asarray(restored["params"]["b"]), np.arange(8))
  ck.close()


def test_missing_checkpoint_and_bad_options(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, async_save=False)
  with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint in"):
    ck.restore(_abstract(_state()))
  with pytest.raises(ValueError, match="every_steps"):
    ckpt_lib.Checkpointer(str(tmp_path), every_steps=0)
