"""The training loop: sharded jitted steps, periodic eval, checkpoints, exact resume."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from mtl import data as data_lib
from mtl import evaluate as evaluate_lib
from mtl import sharding as sharding_lib
from mtl import tasks as tasks_lib
from mtl.models.multitask import build_model
from mtl.nn import partitioning
from mtl.optim import get_method
from mtl.tasks.base import TaskSpec, select_tasks
from mtl.train import checkpoint as ckpt_lib
from mtl.train.metric_writer import MetricWriter
from mtl.train.optimizer import build_optimizer
from mtl.train.preemption import PreemptionWatcher
from mtl.train.state import TrainState, param_count
from mtl.train.registry import TRAIN_STEPS
from mtl.train.step import ScheduledStep, make_eval_step, make_train_step


class TrainingDivergedError(RuntimeError):
  """A loss or gradient became NaN/Inf; the message names the step and the task."""


@dataclasses.dataclass
class Experiment:
  """Everything built from a config: model, tasks, mesh, optimizer, method and the initial state."""
  config: ml_collections.ConfigDict
  info: Any
  tasks: tuple[TaskSpec, ...]
  mesh: jax.sharding.Mesh
  model: nn.Module
  tx: Any
  method: Any
  state: TrainState
  state_shardings: Any
  logical_rules: tuple = ()


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Rejects bad values early with a message naming the field."""
  def positive(name, value):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  positive("num_steps", config.num_steps)
  positive("batch_size", config.batch_size)
  positive("eval_batch_size", config.get("eval_batch_size", config.batch_size))
  positive("log_every", config.log_every)
  positive("checkpoint.every_steps", config.checkpoint.every_steps)
  if config.get("eval_every", 0) < 0:
    raise ValueError(f"config.eval_every must be >= 0 (0 = only at the end), got {config.eval_every}")
  if not config.dataset.get("name"):
    raise ValueError("config.dataset.name is required")
  variant = train_step_name(config)
  if variant != "sandwich" and config.get("control") and config.control.get("enabled", True):
    raise ValueError(f"config.control is set but config.train_step is {variant!r}: control settings only act "
                     "in the 'sandwich' step (set train_step='sandwich', or remove config.control)")
  if variant != "nested_draft" and tuple(config.get("draft", {}).get("widths", ()) or ()):
    raise ValueError(f"config.draft.widths is set but config.train_step is {variant!r}: drafts are only trained "
                     "by the 'nested_draft' step")
  if variant != "teacher_distill" and config.get("teacher", {}).get("workdir"):
    raise ValueError(f"config.teacher.workdir is set but config.train_step is {variant!r}: a teacher is only used "
                     "by the 'teacher_distill' step")


def train_step_name(config: ml_collections.ConfigDict) -> str:
  """`config.train_step` (a name in TRAIN_STEPS); configs saved before that field existed name their variant
  through `control.enabled` / `draft.widths`."""
  if config.get("train_step"):
    return config.train_step
  if config.get("control", {}).get("enabled", False):
    return "sandwich"
  if tuple(config.get("draft", {}).get("widths", ()) or ()):
    return "nested_draft"
  return "standard"


def init_state_fn(model: nn.Module, tx, method, input_shape: tuple[int, ...], seed: int,
                  model_kwargs: dict | None = None) -> Callable[[], TrainState]:
  """`init() -> TrainState` for a model taking inputs [B, *input_shape]. Traced under
  `partitioning.annotate_axes()`, parameters (and, through `tx.init`, their optimizer moments) come boxed in
  `nn.Partitioned` with their logical axis names (unbox with `nn.meta.unbox`): `init_sharded_state` traces it
  with `jax.eval_shape` that way to plan shardings without allocating anything."""
  def init() -> TrainState:
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    variables = dict(model.init({"params": init_rng, "dropout": init_rng}, dummy, train=False,
                                **(model_kwargs or {})))
    params = variables.pop("params")
    model_state = {k: v for k, v in variables.items() if k == "batch_stats"}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=tx.init(params), mtl_state=method.init(nn.meta.unbox(params)), rng=state_rng)
  return init


def init_state(model: nn.Module, tx, method, input_shape: tuple[int, ...], seed: int,
               model_kwargs: dict | None = None) -> TrainState:
  """Parameters and optimizer / method state on the default device (tests, small tools); training uses
  `init_sharded_state`."""
  init = init_state_fn(model, tx, method, input_shape, seed, model_kwargs)
  return jax.jit(lambda: nn.meta.unbox(init()))()


def init_sharded_state(init: Callable[[], TrainState], mesh: jax.sharding.Mesh, logical_rules=(), rules=()
                       ) -> tuple[TrainState, Any]:
  """(state, shardings): the state initialised directly into its shards (born sharded; nothing is gathered
  on one device), with shardings planned from the abstract state (mtl.sharding.state_shardings)."""
  with partitioning.annotate_axes():
    abstract = jax.eval_shape(init)
  shardings = sharding_lib.state_shardings(abstract, mesh, logical_rules, rules)
  state = jax.jit(lambda: nn.meta.unbox(init()), out_shardings=shardings)()
  return state, shardings


def build_experiment(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None) -> Experiment:
  validate_config(config)
  info = data_lib.get_info(config.dataset.name, config.dataset.get("data_dir") or None)
  tasks = select_tasks(info.tasks, tuple(config.dataset.get("tasks", ()) or ()))
  mesh = mesh or sharding_lib.make_mesh(dict(config.get("mesh", {"data": -1})))
  model = build_model(config.model, tasks, tuple(info.input_shape), mesh=mesh)
  tx = build_optimizer(config.optimizer, config.num_steps)
  method = get_method(config.mtl.method, len(tasks), **dict(config.mtl.get("kwargs", {})))
  sharding_cfg = config.get("sharding", {})
  rules = [tuple(r) for r in sharding_cfg.get("rules", ())]
  logical_rules = tuple(tuple(r) for r in sharding_cfg.get("logical_rules", ()))
  init = init_state_fn(model, tx, method, tuple(info.input_shape), config.seed)
  state, state_shardings = init_sharded_state(init, mesh, logical_rules, rules)
  if config.model.get("pretrained"):  # encoder weights from a local file (mtl/models/pretrained.py).
    from mtl.models.pretrained import apply_pretrained
    params = apply_pretrained(state.params, config.model, getattr(model, "encoder", None), tuple(info.input_shape))
    state = state.replace(params=jax.device_put(params, state_shardings.params))
  return Experiment(config, info, tasks, mesh, model, tx, method, state, state_shardings, logical_rules)


def check_batch(exp: Experiment, batch: dict) -> None:
  """Fails with a named task and shapes if the data and the heads disagree."""
  key = exp.info.input_key
  if key not in batch:
    raise ValueError(f"batch has no input {key!r}; keys: {sorted(batch)}")
  if tuple(batch[key].shape[1:]) != tuple(exp.info.input_shape):
    raise ValueError(f"input {key!r} has shape {batch[key].shape[1:]}, the model expects {exp.info.input_shape}")
  one = {k: np.asarray(v)[:1] for k, v in batch.items()}
  # Shapes only (no compute), at the global batch size: layers that split the batch over devices (MoE routing
  # groups) need it to divide; the batch dim is then set to 1 to compare with one example's targets.
  x = jax.ShapeDtypeStruct((exp.config.batch_size,) + tuple(batch[key].shape[1:]), batch[key].dtype)
  outputs = jax.eval_shape(lambda p, s, x: exp.model.apply({"params": p, **s}, x, train=False),
                           exp.state.params, exp.state.model_state, x)
  outputs = {n: jax.ShapeDtypeStruct((1,) + o.shape[1:], o.dtype) for n, o in outputs.items()}
  for t in exp.tasks:
    if t.target_key not in batch:
      raise ValueError(f"task {t.name!r}: batch has no targets {t.target_key!r}; keys: {sorted(batch)}")
    problem = tasks_lib.get_kind(t.kind).check_shapes(tuple(outputs[t.name].shape), one[t.target_key].shape,
                                                      t.num_outputs)
    if problem:
      raise ValueError(f"shape mismatch between data and the head of task {t.name!r} ({t.kind}): {problem}")


def step_runner(exp: Experiment, step_fn: Callable | ScheduledStep | None = None
                ) -> Callable[[TrainState, dict, int], tuple[TrainState, dict]]:
  """`run(state, batch, step)` for a plain step function (one compilation) or a `ScheduledStep` (one
  compilation per variant, made the first time a step needs it)."""
  if not isinstance(step_fn, ScheduledStep):
    jitted = jit_train_step(exp, step_fn)
    return lambda state, batch, step: jitted(state, batch)
  compiled: dict = {}

  def run(state, batch, step):
    key = step_fn.key_for_step(step)
    if key not in compiled:
      compiled[key] = jit_train_step(exp, step_fn.build(key))
    return compiled[key](state, batch)
  return run


def jit_train_step(exp: Experiment, step_fn: Callable | None = None) -> Callable:
  """The step jitted with the state's shardings (state donated); traced under the activation sharding rules."""
  step_fn = step_fn or make_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key)
  batch_sh = sharding_lib.batch_sharding(exp.mesh)
  return _under_activation_rules(exp, jax.jit(
      step_fn, in_shardings=(exp.state_shardings, batch_sh),
      out_shardings=(exp.state_shardings, sharding_lib.replicated(exp.mesh)), donate_argnums=(0,)))


def _under_activation_rules(exp: Experiment, jitted: Callable) -> Callable:
  """`jitted`, traced under the experiment's activation sharding rules when it has logical rules."""
  if not exp.logical_rules:
    return jitted

  def run(*args):
    with sharding_lib.activation_rules(exp.mesh, exp.logical_rules):
      return jitted(*args)
  return run


def build_train_step(exp: Experiment) -> Callable | ScheduledStep:
  """The unjitted step of the variant `config.train_step` names (TRAIN_STEPS), built for `exp`."""
  return TRAIN_STEPS.get(train_step_name(exp.config))(exp)


def evaluate_split(exp: Experiment, state: TrainState, split: str, model_kwargs: dict | None = None,
                   max_batches: int | None = None) -> dict[str, dict[str, float]]:
  """Per-task metrics of `state` on a whole split (the last partial batch is padded and masked), or on its
  first `max_batches` batches."""
  if max_batches is not None and max_batches <= 0:
    raise ValueError(f"max_batches must be positive (or None: the whole split), got {max_batches}")
  cfg = exp.config
  bs = cfg.get("eval_batch_size", cfg.batch_size)
  loader = data_lib.make_loader(cfg.dataset.name, split, batch_size=bs // jax.process_count(), seed=cfg.seed,
                                shuffle=False, num_epochs=1, drop_remainder=False,
                                data_dir=cfg.dataset.get("data_dir") or None, shard_index=jax.process_index(),
                                shard_count=jax.process_count(), tasks=[t.name for t in exp.tasks])
  eval_step = make_eval_step(exp.model, exp.tasks, exp.info.input_key)
  batch_sh = sharding_lib.batch_sharding(exp.mesh)
  kwargs = model_kwargs or {}
  jitted = _under_activation_rules(exp, jax.jit(
      lambda p, s, b: eval_step(p, s, b, **kwargs),
      in_shardings=(exp.state_shardings.params, exp.state_shardings.model_state, batch_sh),
      out_shardings=sharding_lib.replicated(exp.mesh)))

  def batches() -> Iterator[dict]:
    for i, b in enumerate(loader):
      if max_batches is not None and i >= max_batches:
        return
      yield b

  def stats_fn(batch):
    return jitted(state.params, state.model_state, sharding_lib.shard_batch(batch, exp.mesh))
  return evaluate_lib.evaluate_stats(stats_fn, batches(), bs // jax.process_count(), exp.tasks)


@jax.jit
def _accumulate(acc: dict, out: dict, step: jax.Array) -> dict:
  """Adds a step's metrics to the device-side sums and records the first step with a non-finite scalar
  (0 = none) and which scalars were non-finite then, so the loop needs no host sync between log steps."""
  nonfinite = {k: ~jnp.all(jnp.isfinite(v)) for k, v in out["scalars"].items()}
  new_bad = (acc["first_bad"] == 0) & jnp.any(jnp.stack(list(nonfinite.values())))
  return {"sums": jax.tree_util.tree_map(jnp.add, acc["sums"], out), "count": acc["count"] + 1,
          "first_bad": jnp.where(new_bad, step, acc["first_bad"]),
          "nonfinite": {k: jnp.where(new_bad, v, acc["nonfinite"][k]) for k, v in nonfinite.items()}}


def _zero_acc(out: dict) -> dict:
  return {"sums": jax.tree_util.tree_map(jnp.zeros_like, out), "count": jnp.zeros((), jnp.int32),
          "first_bad": jnp.zeros((), jnp.int32),
          "nonfinite": {k: jnp.zeros((), bool) for k in out["scalars"]}}


def _raise_if_diverged(host_acc: dict, tasks) -> None:
  """TrainingDivergedError naming the first non-finite step and what was non-finite at it, if any."""
  step = int(host_acc["first_bad"])
  if step:
    check_finite(step, {k: float("nan") if bad else 0.0 for k, bad in host_acc["nonfinite"].items()}, tasks)


def _train_summary(scalar_sums: dict, stats_sums: dict, count: int, tasks) -> dict[str, float]:
  out = {k: float(v) / count for k, v in scalar_sums.items()}
  for t in tasks:
    for k, v in tasks_lib.get_kind(t.kind).finalize(stats_sums[t.name]).items():
      if k != "loss":
        out[f"{t.name}/{k}"] = v
  return out


def check_finite(step: int, scalars: dict, tasks) -> None:
  """Raises TrainingDivergedError naming `step` and the first non-finite task loss (else the first key)."""
  bad = [k for k, v in scalars.items() if not math.isfinite(float(v))]
  if bad:
    named = [k for k in bad if k.startswith("loss/")]
    what = (f"task {named[0][5:]!r}" if named else f"{bad[0]!r}")
    raise TrainingDivergedError(f"non-finite value at step {step} in {what} (all non-finite: {bad}); the last "
                                f"good checkpoint is kept")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh | None = None,
                       step_fn_factory: Callable[[Experiment], Callable] | None = None,
                       progress: bool = True, stop_at_step: int | None = None) -> dict:
  """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates on the test split.

  Returns {'test': task -> metrics, 'steps_per_second': float, 'examples_per_second': float, 'step': int}.
  The train step is the variant `config.train_step` names (TRAIN_STEPS); `step_fn_factory(exp)` overrides it
  with another unjitted step (or `ScheduledStep`).
  `stop_at_step` ends this job after that step with a checkpoint (as a preemption would); the schedule still
  follows `config.num_steps`, and re-running resumes.
  """
  os.makedirs(workdir, exist_ok=True)
  exp = build_experiment(config, mesh)
  config_json = config.to_json_best_effort(sort_keys=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config_json)
  writer = MetricWriter(workdir)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.every_steps,
                               config.checkpoint.get("max_to_keep", 3))
  dp = jax.process_count()
  if config.batch_size % (sharding_lib.data_parallel_size(exp.mesh)):
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"{sharding_lib.data_parallel_size(exp.mesh)} data-parallel devices")
  train_iter = data_lib.make_loader(config.dataset.name, "train", batch_size=config.batch_size // dp,
                                    seed=config.seed, shuffle=True, num_epochs=None, drop_remainder=True,
                                    data_dir=config.dataset.get("data_dir") or None,
                                    shard_index=jax.process_index(), shard_count=dp,
                                    tasks=[t.name for t in exp.tasks])
  state = exp.state
  if ckpt.latest_step() is not None:
    abstract = ckpt_lib.abstract_like(state, exp.state_shardings)
    state, data_state, _, restored_step = ckpt.restore(abstract, config.checkpoint.get("restore_step", None))
    if data_state is not None:
      train_iter.set_state(data_state)
    logging.info("resumed from step %d", restored_step)
  start = int(state.step)
  logging.info("model has %d parameters", param_count(state.params))
  train_step = step_runner(exp, (step_fn_factory or build_train_step)(exp))

  acc = None
  t_first, examples_timed, steps_timed = None, 0, 0
  bar = tqdm.tqdm(total=config.num_steps, initial=start, desc="train", disable=not progress or
                  jax.process_index() != 0, dynamic_ncols=True)
  step = start
  watcher = PreemptionWatcher(config.get("preemption_sync_every", 10))
  preempted = False
  try:
    for step in range(start + 1, config.num_steps + 1):
      batch = next(train_iter)
      if step == start + 1:
        check_batch(exp, batch)
      state, out = train_step(state, sharding_lib.shard_batch(batch, exp.mesh), step)
      if step == start + 1:
        jax.block_until_ready(state)
        t_first = time.perf_counter()
      else:
        steps_timed += 1
        examples_timed += config.batch_size
      acc = _accumulate(acc if acc is not None else _zero_acc(out), out, jnp.int32(step))
      log_now = step % config.log_every == 0 or step == config.num_steps
      if log_now or ckpt.should_save(step):  # the only host syncs: nothing non-finite is ever saved
        host = jax.device_get(acc)
        _raise_if_diverged(host, exp.tasks)
        if log_now:
          summary = _train_summary(host["sums"]["scalars"], host["sums"]["stats"], int(host["count"]), exp.tasks)
          if steps_timed:
            summary["steps_per_second"] = steps_timed / (time.perf_counter() - t_first)
          writer.write(step, summary, "train")
          bar.set_postfix(loss=f"{summary['loss']:.3f}")
          acc = None
      if config.get("eval_every", 0) and step % config.eval_every == 0 and step != config.num_steps:
        val = evaluate_split(exp, state, config.dataset.get("eval_split", "validation"))
        writer.write(step, {f"{t}/{k}": v for t, m in val.items() for k, v in m.items()}, "validation")
      ckpt.maybe_save(step, state, train_iter.get_state(), config_json)
      bar.update(1)
      if watcher.should_stop(step) or step == stop_at_step:
        preempted = True
        break
  except BaseException:
    ckpt.close()  # let an in-flight save of a good state finish; nothing broken is written.
    raise
  finally:
    bar.close()
    watcher.close()
  if acc is not None:  # steps since the last sync (a preemption or stop_at_step ends between log steps)
    try:
      _raise_if_diverged(jax.device_get({k: acc[k] for k in ("first_bad", "nonfinite")}), exp.tasks)
    except TrainingDivergedError:
      ckpt.close()
      raise
  elapsed = (time.perf_counter() - t_first) if t_first and steps_timed else float("nan")
  ckpt.save(int(state.step), state, train_iter.get_state(), config_json)
  ckpt.close()
  if preempted:
    logging.warning("preempted: saved step %d in %s; re-run the same command to resume", int(state.step), workdir)
    writer.close()
    return {"preempted": True, "step": int(state.step)}
  test = evaluate_split(exp, state, config.dataset.get("test_split", "test"))
  steps_per_second = steps_timed / elapsed if steps_timed else float("nan")
  result = {"test": test, "step": int(state.step), "steps_per_second": steps_per_second,
            "examples_per_second": examples_timed / elapsed if steps_timed else float("nan")}
  writer.write(int(state.step), {f"{t}/{k}": v for t, m in test.items() for k, v in m.items()}, "test")
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result


def train_and_evaluate_or_reuse(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`train_and_evaluate(config, workdir, progress=False)`, or the results.json a finished run left in `workdir`
  (benchmarks that resume: a finished row is read back, not retrained). A run that stopped early (preemption)
  raises, naming the workdir."""
  done = os.path.join(workdir, "results.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  result = train_and_evaluate(config, workdir, progress=False)
  if "test" not in result:
    raise RuntimeError(f"the run in {workdir} stopped early ({result}); re-run to resume it")
  return result


def restore_experiment(workdir: str, step: int | None = None, mesh: jax.sharding.Mesh | None = None
                       ) -> tuple[Experiment, TrainState, int]:
  """Rebuilds the experiment from a workdir's saved config and restores its checkpoint (latest by default)
  onto `mesh` (default: all local devices, whatever mesh it was trained on)."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ckpt_lib.CheckpointError(f"no checkpoints directory in {workdir}; was it trained with experiments.train?")
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, every_steps=1, async_save=False)
  try:
    config = ml_collections.ConfigDict(ckpt.read_config(step))
    exp = build_experiment(config, mesh)
    state, _, _, restored = ckpt.restore(ckpt_lib.abstract_like(exp.state, exp.state_shardings), step)
  finally:
    ckpt.close()
  return exp, state, restored
