"""Sandwich-rule step: loss = teacher + smallest + picked pool config + CIKD, and it trains in the loop."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl import sharding
from mtl.control.cikd import cikd_loss
from mtl.control import widths as widths_lib
from mtl.testing import synthetic_data
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop
from mtl.control.sandwich_step import make_sandwich_train_step, pool_picks, random_pool, sandwich_step
from mtl.train.step import ScheduledStep
from mtl.train.step import task_losses_and_stats


def _control_config(num_steps=4):
  c = synthetic_config(num_steps, every_steps=100)
  c.train_step = "sandwich"
  c.control = ml_collections.ConfigDict(dict(enabled=True, widths=(0.5, 1.0), num_random=1, pool_size=3,
                                             cikd_weight=0.5, cikd_normalize=False))
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  return c


def test_sandwich_loss_is_sum_over_configs_plus_cikd():
  config = _control_config()
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  exp = loop.build_experiment(config, mesh)
  picks = pool_picks(config.seed, 1, 1, 3)
  step = make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", config.control, config.seed,
                                  picks)
  batch = next(synthetic_data.make_loader("synthetic", "train", batch_size=16))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  _, out = jax.jit(step)(exp.state, batch)

  names = [t.name for t in exp.tasks]
  state = exp.state
  pool = random_pool(config.control, names, config.seed)
  configs = [widths_lib.largest((0.5, 1.0), names), widths_lib.smallest((0.5, 1.0), names), pool[picks[0]]]
  total, feats = 0.0, []
  for cfg in configs:
    o, f = exp.model.apply({"params": state.params}, batch["image"], train=True, return_features=True,
                           **cfg.apply_kwargs())
    losses, _ = task_losses_and_stats(o, batch, exp.tasks)
    total += float(jnp.sum(losses))
    feats.append(f)
  total += 0.5 * sum(float(cikd_loss(f, feats[0])) for f in feats[1:])
  np.testing.assert_allclose(float(out["scalars"]["objective"]), total, rtol=1e-5)


def test_control_config_trains_in_the_loop_and_subnetworks_evaluate(tmp_path):
  config = _control_config(num_steps=4)
  result = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert result["step"] == 4
  exp, state, step = loop.restore_experiment(str(tmp_path))
  assert step == 4
  small = widths_lib.smallest((0.5, 1.0), [t.name for t in exp.tasks])
  metrics = loop.evaluate_split(exp, state, "test", model_kwargs=small.apply_kwargs())
  assert set(metrics) == {"even", "odd"} and all(0 <= m["accuracy"] <= 1 for m in metrics.values())


def test_scheduled_step_picks_are_deterministic_and_cover_the_pool(monkeypatch):
  config = _control_config()
  exp = loop.build_experiment(config)
  scheduled = sandwich_step(exp)
  assert isinstance(scheduled, ScheduledStep)
  keys = [scheduled.key_for_step(s) for s in range(1, 61)]
  assert keys == [pool_picks(config.seed, s, 1, 3) for s in range(1, 61)]  # a resumed run redraws the same
  assert {k for k in keys} == {(0,), (1,), (2,)}
  # The loop compiles one variant per distinct pick, not one per step.
  built = []
  original = scheduled.build
  runner = loop.step_runner(exp, ScheduledStep(scheduled.key_for_step, lambda k: built.append(k) or original(k)))
  batch = next(synthetic_data.make_loader("synthetic", "train", batch_size=16))
  state = exp.state
  for s in range(1, 7):
    state, _ = runner(state, sharding.shard_batch(batch, exp.mesh), s)
  assert sorted(built) == sorted({pool_picks(config.seed, s, 1, 3) for s in range(1, 7)})


def test_bad_control_values_are_named():
  config = _control_config()
  config.control.num_random = -1
  exp = loop.build_experiment(config)
  with pytest.raises(ValueError, match="control.num_random"):
    make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", config.control, 0)
  config.control.num_random = 1
  with pytest.raises(ValueError, match="indices into the pool"):
    make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", config.control, 0, picks=(5,))


def test_pool_covers_every_intermediate_encoder_width():
  control = ml_collections.ConfigDict(dict(widths=(0.25, 0.5, 0.75, 1.0), pool_size=4))
  pool = random_pool(control, ["a", "b"], seed=0)
  assert {c.encoder for c in pool} == {0.5, 0.75}
  assert all(w in (0.25, 0.5, 0.75, 1.0) for c in pool for _, w in c.heads)


@pytest.mark.parametrize("pool_size", [1, 3, 8, 10])
def test_random_pool_covers_every_head_width_and_intermediate_encoder_width(pool_size):
  widths = (0.25, 0.5, 0.75, 1.0)
  control = ml_collections.ConfigDict(dict(widths=widths, pool_size=pool_size))
  tasks = ["semseg", "depth", "edges"]
  pool = random_pool(control, tasks, seed=0)
  assert len(pool) == pool_size and pool == random_pool(control, tasks, seed=0)
  assert [c.encoder for c in pool] == [(0.5, 0.75)[i % 2] for i in range(pool_size)]
  for t in tasks:
    counts = {w: sum(c.head_widths[t] == w for c in pool) for w in widths}
    assert max(counts.values()) - min(counts.values()) <= 1, (t, counts)  # stratified, not i.i.d.
    if pool_size >= len(widths):
      assert min(counts.values()) >= 1
    else:  # too small a pool for every width: intermediate widths first
      assert {w for w, n in counts.items() if n} == set((0.5, 0.75, 0.25)[:pool_size])
  assert len({tuple(c.head_widths[t] for c in pool) for t in tasks}) > 1 or pool_size == 1  # shuffled per task
  with pytest.raises(ValueError, match="pool_size must be >= 1"):
    random_pool(ml_collections.ConfigDict(dict(widths=widths, pool_size=0)), tasks, seed=0)
