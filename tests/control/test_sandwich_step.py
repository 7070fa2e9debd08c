"""Sandwich-rule step: loss = teacher + smallest + covering students (+ CIKD + output distillation), one compiled
variant per students' encoder widths, head widths traced; it trains in the loop."""
import collections
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl import sharding
from mtl.control import coverage
from mtl.control import widths as widths_lib
from mtl.control.cikd import cikd_loss
from mtl.control.output_distill import output_distill_losses
from mtl.control.sandwich_step import control_values, make_sandwich_train_step, sandwich_step, uniform_for_step
from mtl.testing import synthetic_data
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop
from mtl.train.step import ScheduledStep, task_losses_and_stats

WIDTHS = (0.5, 1.0)


def _control_config(num_steps=4, widths=WIDTHS, **control):
  c = synthetic_config(num_steps, every_steps=100)
  c.train_step = "sandwich"
  c.control = ml_collections.ConfigDict(dict(enabled=True, widths=widths, num_random=1, cikd_weight=0.5,
                                             cikd_normalize=False, output_distill_weight=0.3, **control))
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  return c


def _batch():
  batch = next(synthetic_data.make_loader("synthetic", "train", batch_size=16))
  return {k: jnp.asarray(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def exp():
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  return loop.build_experiment(_control_config(), mesh)


def _reference_objective(exp, batch, step, cikd_w, distill_w, student_w=1.0, seed=0, counts=None, head_counts=None,
                         widths=WIDTHS, uniform=(), shared_heads=False):
  """Plain sum over the sliced (deployed) configurations the step trains, from the host-side draws."""
  names = [t.name for t in exp.tasks]
  enc, heads = coverage.step_draws(seed, step, 1, len(widths), len(names), counts, head_counts, shared_heads)
  student = widths_lib.WidthConfig.create(widths[int(enc[0])], {t: widths[int(heads[0, i])]
                                                                 for i, t in enumerate(names)})
  configs = [widths_lib.largest(widths, names), widths_lib.smallest(widths, names), student]
  configs += [widths_lib.WidthConfig.create(w, {t: w for t in names}) for w in uniform]
  total, feats, outs = 0.0, [], []
  for j, cfg in enumerate(configs):
    o, f = exp.model.apply({"params": exp.state.params}, batch["image"], train=True, return_features=True,
                           **cfg.apply_kwargs())
    total += (1.0 if j == 0 else student_w) * float(jnp.sum(task_losses_and_stats(o, batch, exp.tasks)[0]))
    feats.append(f)
    outs.append(o)
  total += cikd_w * sum(float(cikd_loss(f, feats[0])) for f in feats[1:])
  total += distill_w * sum(float(jnp.sum(output_distill_losses(o, outs[0], batch, exp.tasks))) for o in outs[1:])
  return total, student


@pytest.mark.parametrize("cikd_w,distill_w,student_w,counts,head_counts", [
    (0.5, 0.3, 1.0, None, None), (0.0, 0.0, 1.0, None, None), (0.5, 0.0, 0.25, None, None),
    (0.0, 0.0, 0.5, (3, 1), None), (0.5, 0.0, 1.0, (1, 2), (1, 3))])
def test_sandwich_objective_equals_sum_over_sliced_configs(exp, cikd_w, distill_w, student_w, counts, head_counts):
  batch = _batch()
  control = exp.config.control.copy_and_resolve_references()
  control.cikd_weight, control.output_distill_weight, control.student_weight = cikd_w, distill_w, student_w
  if counts:
    control.encoder_counts = counts
  if head_counts:
    control.head_counts = head_counts
  for step in (1, 2, 3):
    state = exp.state.replace(step=jnp.asarray(step - 1, exp.state.step.dtype))
    enc = coverage.encoder_key(0, step, 1, WIDTHS, len(exp.tasks), counts, head_counts)
    fn = make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", control, 0, enc)
    _, out = jax.jit(fn)(state, batch)
    want, student = _reference_objective(exp, batch, step, cikd_w, distill_w, student_w, counts=counts,
                                         head_counts=head_counts)
    np.testing.assert_allclose(float(out["scalars"]["objective"]), want, rtol=2e-5)
    for t, w in student.heads:  # the traced head widths are the host-side draws
      assert float(out["scalars"][f"control/head_width/0/{t}"]) == w


@pytest.mark.parametrize("uniform,student_w", [((0.5,), 1.0), ((0.5, 0.75), 0.5)])
def test_uniform_students_are_trained_every_step(uniform, student_w):
  """The uniform middle configurations join the objective at every step as sliced students (task loss x
  student_weight, CIKD, output distillation), beside the drawn one; their gradient reaches the middle units."""
  widths = (0.25, 0.5, 0.75, 1.0)
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  exp4 = loop.build_experiment(_control_config(widths=widths, uniform_students=uniform), mesh)
  batch = _batch()
  control = exp4.config.control.copy_and_resolve_references()
  control.student_weight = student_w
  for step in (1, 2):
    state = exp4.state.replace(step=jnp.asarray(step - 1, exp4.state.step.dtype))
    enc = coverage.encoder_key(0, step, 1, widths, len(exp4.tasks))
    fn = make_sandwich_train_step(exp4.model, exp4.tasks, exp4.tx, exp4.method, "image", control, 0, enc)
    _, out = jax.jit(fn)(state, batch)
    want, _ = _reference_objective(exp4, batch, step, 0.5, 0.3, student_w, widths=widths, uniform=uniform)
    without, _ = _reference_objective(exp4, batch, step, 0.5, 0.3, student_w, widths=widths)
    assert abs(want - without) > 1e-3 * abs(want)  # the uniform students are a real share of the objective
    np.testing.assert_allclose(float(out["scalars"]["objective"]), want, rtol=2e-5)


@pytest.mark.parametrize("sliced", [False, True])
def test_uniform_per_step_trains_the_uniform_configurations_round_robin(sliced):
  """uniform_per_step=1 with uniform (0.5, 0.75): step s trains the uniform configuration of width 0.5 on odd
  steps and 0.75 on even ones (the variant key names it), and the objective is the plain sum over the sliced
  configurations that step trains."""
  widths = (0.25, 0.5, 0.75, 1.0)
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  exp4 = loop.build_experiment(_control_config(widths=widths, uniform_students=(0.5, 0.75), uniform_per_step=1,
                                               sliced_students=sliced), mesh)
  scheduled = sandwich_step(exp4)
  assert [uniform_for_step((0.5, 0.75), 1, s) for s in range(1, 6)] == [(0.5,), (0.75,), (0.5,), (0.75,), (0.5,)]
  assert [uniform_for_step((0.5, 0.75), 2, s) for s in (1, 2)] == [(0.5, 0.75)] * 2
  assert uniform_for_step((0.25, 0.5, 0.75), 2, 2) == (0.25, 0.75)  # draws 2 and 3 of the cycle 0.25, 0.5, 0.75
  batch = _batch()
  for step in (1, 2):
    students, uniform = scheduled.key_for_step(step)
    assert uniform == ((0.5,) if step == 1 else (0.75,))
    state = exp4.state.replace(step=jnp.asarray(step - 1, exp4.state.step.dtype))
    _, out = jax.jit(scheduled.build((students, uniform)))(state, batch)
    want, _ = _reference_objective(exp4, batch, step, 0.5, 0.3, widths=widths, uniform=uniform, shared_heads=sliced)
    np.testing.assert_allclose(float(out["scalars"]["objective"]), want, rtol=2e-5)
  assert collections.Counter(scheduled.key_for_step(s)[1] for s in range(1, 33)) == {(0.5,): 16, (0.75,): 16}
  with pytest.raises(ValueError, match=r"uniform_widths \(0.25,\) must be 1 of control.uniform_students"):
    make_sandwich_train_step(exp4.model, exp4.tasks, exp4.tx, exp4.method, "image", exp4.config.control, 0,
                             *(((0.5,), (0.5,)) if sliced else ((0.5,), None)), (0.25,))


def test_sliced_students_share_one_head_width_and_equal_the_plain_sum():
  """sliced_students: the host names each student (encoder width, head width of every task); the step slices it
  and its objective is the plain sum over the sliced configurations; one compiled variant per such key."""
  widths = (0.25, 0.5, 0.75, 1.0)
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  exp4 = loop.build_experiment(_control_config(widths=widths, sliced_students=True, uniform_students=(0.5,)), mesh)
  names = [t.name for t in exp4.tasks]
  batch = _batch()
  for step in (1, 2, 3):
    key = coverage.sliced_key(0, step, 1, widths, len(names))
    state = exp4.state.replace(step=jnp.asarray(step - 1, exp4.state.step.dtype))
    fn = make_sandwich_train_step(exp4.model, exp4.tasks, exp4.tx, exp4.method, "image", exp4.config.control, 0,
                                  (key[0][0],), (key[0][1],))
    _, out = jax.jit(fn)(state, batch)
    want, student = _reference_objective(exp4, batch, step, 0.5, 0.3, widths=widths, uniform=(0.5,),
                                         shared_heads=True)
    assert student.encoder == key[0][0] and set(student.head_widths.values()) == {key[0][1]}
    np.testing.assert_allclose(float(out["scalars"]["objective"]), want, rtol=2e-5)
    for t in names:
      assert float(out["scalars"][f"control/head_width/0/{t}"]) == key[0][1]
  scheduled = sandwich_step(exp4)
  keys = [scheduled.key_for_step(s) for s in range(1, 17)]
  assert sorted(keys) == sorted((((e, h),), (0.5,)) for e in widths for h in widths)  # every pair once per block
  with pytest.raises(ValueError, match="head_widths .* must be 1 of the widths"):
    make_sandwich_train_step(exp4.model, exp4.tasks, exp4.tx, exp4.method, "image", exp4.config.control, 0,
                             (0.5,), (0.3,))


def test_control_config_trains_in_the_loop_and_subnetworks_evaluate(tmp_path):
  config = _control_config(num_steps=4)
  result = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert result["step"] == 4
  exp, state, step = loop.restore_experiment(str(tmp_path))
  assert step == 4
  small = widths_lib.smallest(WIDTHS, [t.name for t in exp.tasks])
  metrics = loop.evaluate_split(exp, state, "test", model_kwargs=small.apply_kwargs())
  assert set(metrics) == {"even", "odd"} and all(0 <= m["accuracy"] <= 1 for m in metrics.values())


def test_one_compiled_variant_per_encoder_key(exp):
  scheduled = sandwich_step(exp)
  assert isinstance(scheduled, ScheduledStep)
  keys = [scheduled.key_for_step(s) for s in range(1, 9)]
  assert keys == [(coverage.encoder_key(0, s, 1, WIDTHS, 2), ()) for s in range(1, 9)]  # a resumed run redraws
  assert set(keys) == {((0.5,), ()), ((1.0,), ())}
  built = []
  original = scheduled.build
  runner = loop.step_runner(exp, ScheduledStep(scheduled.key_for_step, lambda k: built.append(k) or original(k)))
  batch = sharding.shard_batch(next(synthetic_data.make_loader("synthetic", "train", batch_size=16)), exp.mesh)
  state = exp.state
  for s in range(1, 9):
    state, _ = runner(state, batch, s)
  assert sorted(built) == sorted(set(keys))  # compiled once per key, not once per step or per head width


def test_every_width_pair_of_every_task_is_trained_within_the_first_steps():
  widths, tasks = (0.25, 0.5, 0.75, 1.0), 3
  for num_random in (1, 2, 3):
    steps = math.ceil(len(widths) ** 2 / num_random)
    seen = {t: set() for t in range(tasks)}
    for s in range(1, steps + 1):
      enc, heads = coverage.step_draws(7, s, num_random, len(widths), tasks)
      assert tuple(widths[int(i)] for i in enc) == coverage.encoder_key(7, s, num_random, widths, tasks)
      for j in range(num_random):
        for t in range(tasks):
          seen[t].add((int(enc[j]), int(heads[j, t])))
    assert all(len(v) == len(widths) ** 2 for v in seen.values()), (num_random, seen)
  # Fresh configurations per block: the joint head choices of block 2 are not those of block 1.
  first = [tuple(np.asarray(coverage.student_draw(7, d, 4, 3)[1])) for d in range(16)]
  second = [tuple(np.asarray(coverage.student_draw(7, d, 4, 3)[1])) for d in range(16, 32)]
  assert first != second
  # Deterministic in (seed, step), different across seeds; traced and host draws agree.
  assert coverage.encoder_key(7, 5, 2, widths, 3) == coverage.encoder_key(7, 5, 2, widths, 3)
  assert [coverage.encoder_key(1, s, 1, widths, 3) for s in range(1, 17)] != [
      coverage.encoder_key(2, s, 1, widths, 3) for s in range(1, 17)]
  traced = jax.jit(lambda s: coverage.step_draws(7, s, 2, 4, 3))(jnp.int32(9))
  host = coverage.step_draws(7, 9, 2, 4, 3)
  for a, b in zip(traced, host):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_encoder_counts_cover_every_pair_and_set_each_encoder_widths_share():
  """With counts (1, 3, 3, 1) a block of 4 * 8 draws holds every (encoder, head) pair of every task counts[e]
  times: all pairs covered within ceil(32 / num_random) steps, encoder e drawn counts[e] / 8 of the time."""
  widths, tasks, counts = (0.25, 0.5, 0.75, 1.0), 3, (1, 3, 3, 1)
  assert coverage.block_size(4, counts) == 32 and coverage.block_size(4) == 16
  for num_random in (1, 3):
    steps = math.ceil(32 / num_random)
    pairs = {t: {} for t in range(tasks)}
    for s in range(1, steps + 1):
      enc, heads = coverage.step_draws(5, s, num_random, 4, tasks, counts)
      assert tuple(widths[int(i)] for i in enc) == coverage.encoder_key(5, s, num_random, widths, tasks, counts)
      for j in range(num_random):
        for t in range(tasks):
          key = (int(enc[j]), int(heads[j, t]))
          pairs[t][key] = pairs[t].get(key, 0) + 1
    assert all(len(p) == 16 for p in pairs.values()), num_random
  # Exactly counts[e] copies of each pair per block (two blocks checked).
  for block in range(2):
    draws = [coverage.student_draw(5, d, 4, tasks, counts) for d in range(32 * block, 32 * (block + 1))]
    for t in range(tasks):
      seen = {}
      for e, h in draws:
        seen[(int(e), int(h[t]))] = seen.get((int(e), int(h[t])), 0) + 1
      assert seen == {(e, h): counts[e] for e in range(4) for h in range(4)}, (block, t)
  # All-ones counts are the default schedule, draw for draw.
  for d in range(20):
    for a, b in zip(coverage.student_draw(5, d, 4, 3, (1, 1, 1, 1)), coverage.student_draw(5, d, 4, 3)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_head_counts_cover_every_pair_and_set_each_head_widths_share():
  """head_counts (1, 3, 3, 1) with encoder counts (2, 1, 1, 1): a block of 8 * 5 draws holds every (encoder e,
  head h) pair of every task counts[e] * head_counts[h] times, so each task's middle head widths are 3/8 of the
  students' each; all pairs covered within ceil(40 / num_random) steps."""
  widths, tasks, counts, hcounts = (0.25, 0.5, 0.75, 1.0), 3, (2, 1, 1, 1), (1, 3, 3, 1)
  assert coverage.block_size(4, counts, hcounts) == 40 and coverage.block_size(4, None, hcounts) == 32
  for num_random in (1, 3):
    pairs = {t: set() for t in range(tasks)}
    for s in range(1, math.ceil(40 / num_random) + 1):
      enc, heads = coverage.step_draws(9, s, num_random, 4, tasks, counts, hcounts)
      assert tuple(widths[int(i)] for i in enc) == coverage.encoder_key(9, s, num_random, widths, tasks, counts,
                                                                          hcounts)
      for j in range(num_random):
        for t in range(tasks):
          pairs[t].add((int(enc[j]), int(heads[j, t])))
    assert all(len(p) == 16 for p in pairs.values()), num_random
  for block in range(2):
    draws = [coverage.student_draw(9, d, 4, tasks, counts, hcounts) for d in range(40 * block, 40 * (block + 1))]
    for t in range(tasks):
      seen = {}
      for e, h in draws:
        seen[(int(e), int(h[t]))] = seen.get((int(e), int(h[t])), 0) + 1
      assert seen == {(e, h): counts[e] * hcounts[h] for e in range(4) for h in range(4)}, (block, t)
    # tasks are drawn independently: their head sequences differ within a block
    assert len({tuple(int(h[t]) for _, h in draws) for t in range(tasks)}) == tasks
  # The default (all ones) is the schedule of runs made before head_counts existed: it permutes range(W) as
  # `permutation(key, W)` did, draw for draw.
  for i in range(8):
    k = jax.random.PRNGKey(i)
    np.testing.assert_array_equal(np.asarray(jax.random.permutation(k, 4)),
                                  np.asarray(jax.random.permutation(k, jnp.arange(4, dtype=jnp.int32))))
  for d in range(20):
    for a, b in zip(coverage.student_draw(5, d, 4, 3, None, (1, 1, 1, 1)), coverage.student_draw(5, d, 4, 3)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_shared_head_draws_cover_every_pair_with_the_counts():
  """shared_heads: every task gets the same head width; a block still holds every (encoder e, head h) pair
  counts[e] * head_counts[h] times; the encoder draws are those of the per-task schedule."""
  widths, tasks, counts, hcounts = (0.25, 0.5, 0.75, 1.0), 3, (1, 3, 3, 1), (1, 2, 2, 1)
  size = coverage.block_size(4, counts, hcounts)
  for block in range(2):
    seen = {}
    for d in range(size * block, size * (block + 1)):
      e, h = coverage.student_draw(4, d, 4, tasks, counts, hcounts, shared_heads=True)
      assert len(set(np.asarray(h).tolist())) == 1
      assert int(e) == int(coverage.student_draw(4, d, 4, tasks, counts, hcounts)[0])
      seen[(int(e), int(h[0]))] = seen.get((int(e), int(h[0])), 0) + 1
    assert seen == {(e, h): counts[e] * hcounts[h] for e in range(4) for h in range(4)}, block
  for s in range(1, 6):
    enc, heads = coverage.step_draws(4, s, 2, 4, tasks, counts, hcounts, True)
    assert coverage.sliced_key(4, s, 2, widths, tasks, counts, hcounts) == tuple(
        (widths[int(e)], widths[int(h[0])]) for e, h in zip(enc, heads))


def test_bad_control_values_are_named(exp):
  def build(**changes):
    control = exp.config.control.copy_and_resolve_references()
    for k, v in changes.items():
      control[k] = v
    return make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", control, 0)

  with pytest.raises(ValueError, match="control.num_random"):
    build(num_random=0)
  with pytest.raises(ValueError, match="output_distill_weight must be >= 0"):
    build(output_distill_weight=-1.0)
  with pytest.raises(ValueError, match="cikd_normalize=True has no effect"):
    build(cikd_weight=0.0, cikd_normalize=True)
  for bad in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="control.student_weight"):
      build(student_weight=bad)
  with pytest.raises(ValueError, match="pool_size was removed"):
    build(pool_size=8)
  for bad in ((1, 3, 3), (0, 1, 1, 1), (1, 1.5, 1, 1), (1, 1, 1, 65)):
    with pytest.raises(ValueError, match="control.encoder_counts"):
      build(encoder_counts=bad)
    with pytest.raises(ValueError, match="control.head_counts: head counts"):
      build(head_counts=bad)
  with pytest.raises(ValueError, match="control.uniform_students .* not middle widths"):
    build(uniform_students=(1.0,))  # WIDTHS has no middle width: the largest is trained every step already
  with pytest.raises(ValueError, match="control.uniform_students must be a sequence"):
    build(uniform_students=("half",))
  with pytest.raises(ValueError, match="control.uniform_students has a repeated width"):
    control_values(ml_collections.ConfigDict(dict(widths=(0.25, 0.5, 1.0), uniform_students=(0.5, 0.5))))
  with pytest.raises(ValueError, match="uniform_per_step=1 has no effect without control.uniform_students"):
    build(uniform_per_step=1)
  for bad in (-1, 2):
    with pytest.raises(ValueError, match=r"control.uniform_per_step must be in \[0, 1\]"):
      control_values(ml_collections.ConfigDict(dict(widths=(0.25, 0.5, 1.0), uniform_students=(0.5,),
                                                    uniform_per_step=bad)))
  for bad in (1.5, True, False, "1"):
    with pytest.raises(ValueError, match="control.uniform_per_step must be an int"):
      control_values(ml_collections.ConfigDict(dict(widths=(0.25, 0.5, 1.0), uniform_students=(0.5,),
                                                    uniform_per_step=bad)))
  with pytest.raises(ValueError, match="control.sliced_students must be True or False"):
    build(sliced_students="yes")
  with pytest.raises(ValueError, match="head_widths are drawn inside the step unless control.sliced_students"):
    make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", exp.config.control, 0, (0.5,), (0.5,))
  with pytest.raises(ValueError, match="encoder_widths"):
    make_sandwich_train_step(exp.model, exp.tasks, exp.tx, exp.method, "image", exp.config.control, 0, (0.3,))
