"""The training loop on a synthetic dataset: sharded == single device, exact resume, preemption, NaN stop."""
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl import sharding
from mtl.train import checkpoint as ckpt_lib
from mtl.train import loop
from mtl.train.preemption import PreemptionWatcher
from mtl.testing import synthetic_data
from mtl.testing.train_synthetic import restored_params, synthetic_config


def _config(num_steps=6, every=3):
  return synthetic_config(num_steps, every)


def test_eight_device_mesh_matches_one_device(tmp_path):
  config = _config(num_steps=4, every=4)
  mesh8 = sharding.make_mesh({"data": -1})
  mesh1 = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  r8 = loop.train_and_evaluate(config, str(tmp_path / "m8"), mesh=mesh8, progress=False)
  r1 = loop.train_and_evaluate(config, str(tmp_path / "m1"), mesh=mesh1, progress=False)
  p8, _ = restored_params(str(tmp_path / "m8"))
  p1, _ = restored_params(str(tmp_path / "m1"))
  for a, b in zip(jax.tree_util.tree_leaves(p8), jax.tree_util.tree_leaves(p1)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  for t in ("even", "odd"):
    np.testing.assert_allclose(r8["test"][t]["loss"], r1["test"][t]["loss"], rtol=1e-4)


def test_resume_continues_bit_for_bit(tmp_path):
  straight = _config(num_steps=6, every=3)
  loop.train_and_evaluate(straight, str(tmp_path / "straight"), progress=False)
  out = loop.train_and_evaluate(straight, str(tmp_path / "resumed"), progress=False, stop_at_step=3)
  assert out == {"preempted": True, "step": 3}
  loop.train_and_evaluate(straight, str(tmp_path / "resumed"), progress=False)
  pa, sa = restored_params(str(tmp_path / "straight"))
  pb, sb = restored_params(str(tmp_path / "resumed"))
  assert sa == sb == 6
  for a, b in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
    np.testing.assert_array_equal(a, b)


class _SignalAt(PreemptionWatcher):
  """Sends itself a real SIGTERM at a given step."""
  at = 4

  def should_stop(self, step):
    if step == self.at:
      os.kill(os.getpid(), signal.SIGTERM)
    return super().should_stop(step)


def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path, monkeypatch):
  config = _config(num_steps=6, every=100)
  loop.train_and_evaluate(config, str(tmp_path / "straight"), progress=False)
  monkeypatch.setattr(loop, "PreemptionWatcher", _SignalAt)
  out = loop.train_and_evaluate(config, str(tmp_path / "killed"), progress=False)
  assert out == {"preempted": True, "step": 4}
  monkeypatch.setattr(loop, "PreemptionWatcher", PreemptionWatcher)
  loop.train_and_evaluate(config, str(tmp_path / "killed"), progress=False)
  pa, _ = restored_params(str(tmp_path / "straight"))
  pb, _ = restored_params(str(tmp_path / "killed"))
  for a, b in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
    np.testing.assert_array_equal(a, b)


def test_nan_stops_with_step_and_task_and_keeps_checkpoint(tmp_path):
  config = _config(num_steps=6, every=2)

  def factory(exp):
    step = loop.make_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key)

    def poisoned(state, batch):
      new, out = step(state, batch)
      bad = jnp.where(state.step + 1 >= 3, jnp.nan, 0.0)
      out["scalars"]["loss/odd"] = out["scalars"]["loss/odd"] + bad
      return new.replace(params=jax.tree_util.tree_map(lambda p: p + bad, new.params)), out
    return poisoned

  with pytest.raises(loop.TrainingDivergedError, match=r"step 3 in task 'odd'"):
    loop.train_and_evaluate(config, str(tmp_path), step_fn_factory=factory, progress=False)
  ck = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), 1, async_save=False)
  assert ck.all_steps() == [2]
  ck.close()


@pytest.mark.parametrize("field,value,match", [
    ("num_steps", 0, "num_steps"), ("batch_size", -4, "batch_size"), ("checkpoint.every_steps", 0, "every_steps"),
    ("optimizer.learning_rate", -1.0, "learning_rate"), ("optimizer.name", "lion9", "optimizer.name"),
    ("mtl.method", "no-such-method", "no-such-method")])
def test_bad_config_values_are_named(tmp_path, field, value, match):
  config = _config()
  node = config
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(config, str(tmp_path), progress=False)


def test_unknown_task_and_batch_not_divisible(tmp_path):
  config = _config()
  config.dataset.tasks = ("even", "middle")
  with pytest.raises(ValueError, match=r"unknown task name\(s\) \['middle'\]"):
    loop.train_and_evaluate(config, str(tmp_path / "a"), progress=False)
  config = _config()
  config.batch_size = 12
  with pytest.raises(ValueError, match="not divisible by the 8 data-parallel devices"):
    loop.train_and_evaluate(config, str(tmp_path / "b"), progress=False)


def test_head_data_shape_mismatch_is_named(tmp_path, monkeypatch):
  from mtl.tasks.base import TaskSpec
  monkeypatch.setattr(synthetic_data, "TASKS", (TaskSpec("even", "classification", 3),
                                                TaskSpec("odd", "semseg", 3)))
  with pytest.raises(ValueError, match=r"shape mismatch between data and the head of task 'odd'"):
    loop.train_and_evaluate(_config(), str(tmp_path), progress=False)


def test_train_and_evaluate_or_reuse_trains_once_then_reads_back(tmp_path, monkeypatch):
  wd = str(tmp_path / "run")
  first = loop.train_and_evaluate_or_reuse(_config(num_steps=2, every=2), wd)
  assert first["step"] == 2 and set(first["test"]) == {"even", "odd"}

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run must be read back, not retrained")

  monkeypatch.setattr(loop, "train_and_evaluate", no_training)
  again = loop.train_and_evaluate_or_reuse(_config(num_steps=2, every=2), wd)
  assert again == json.loads(json.dumps(first))


def test_train_and_evaluate_or_reuse_names_a_run_that_stopped_early(tmp_path, monkeypatch):
  monkeypatch.setattr(loop, "train_and_evaluate", lambda c, w, progress: {"preempted": True, "step": 1})
  with pytest.raises(RuntimeError, match="stopped early"):
    loop.train_and_evaluate_or_reuse(_config(), str(tmp_path / "x"))
