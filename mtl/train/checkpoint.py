"""orbax checkpoints of the train state, the data-iterator position and the config.

Each step directory holds three items: `state` (arrays, restorable onto any mesh), `data` (the grain iterator
state, JSON) and `config` (JSON). orbax writes a step into a temporary directory and renames it when complete,
so a crash mid-save never leaves a step that looks finished; a state with non-finite values is refused before
it is written, so a good checkpoint is never followed by a broken one.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint cannot be written or read; the message names the directory and the step."""


def _encode_data_state(state: Any) -> dict:
  if state is None:
    return {"kind": "none"}
  if isinstance(state, bytes):
    return {"kind": "bytes", "value": base64.b64encode(state).decode("ascii")}
  return {"kind": "json", "value": json.loads(json.dumps(state))}


def _decode_data_state(blob: dict) -> Any:
  kind = blob.get("kind")
  if kind == "none":
    return None
  if kind == "bytes":
    return base64.b64decode(blob["value"])
  if kind == "json":
    return blob["value"]
  raise CheckpointError(f"unknown data-iterator state kind {kind!r}")


@jax.jit
def _finite_flags(leaves: list) -> list:
  return [jnp.all(jnp.isfinite(x)) for x in leaves]


def nonfinite_leaves(tree: Any) -> list[str]:
  """Paths of floating-point leaves holding NaN or Inf (one compiled check for the whole tree)."""
  items = [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
           if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)]
  if not items:
    return []
  flags = jax.device_get(_finite_flags([leaf for _, leaf in items]))
  return [path for (path, _), ok in zip(items, flags) if not bool(ok)]


class Checkpointer:
  """Saves every `every_steps` steps (and on demand), keeps the newest `max_to_keep`, restores exactly.

  Args:
    directory: where step directories go (created if missing).
    every_steps: save period in steps; `maybe_save` saves when step % every_steps == 0.
    max_to_keep: newest checkpoints kept (>= 1).
    async_save: let training go on while a step is written.
  """

  def __init__(self, directory: str, every_steps: int, max_to_keep: int = 3, async_save: bool = True):
    if every_steps < 1:
      raise ValueError(f"checkpoint every_steps must be >= 1, got {every_steps}")
    if max_to_keep < 1:
      raise ValueError(f"checkpoint max_to_keep must be >= 1, got {max_to_keep}")
    self.directory = os.path.abspath(directory)
    self.every_steps = every_steps
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data", "config"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: Any, config_json: str, force: bool = True) -> bool:
    """Writes `step` unless it exists already. Raises CheckpointError if the state holds NaN/Inf."""
    if step in self._manager.all_steps():
      return False
    bad = nonfinite_leaves(state)
    if bad:
      raise CheckpointError(f"refusing to checkpoint step {step} in {self.directory}: non-finite values in "
                            f"{bad[:5]}{' ...' if len(bad) > 5 else ''}; the previous checkpoint is kept")
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(_encode_data_state(data_state)),
                              config=ocp.args.JsonSave(json.loads(config_json)))
    return self._manager.save(step, args=args, force=force)

  def should_save(self, step: int) -> bool:
    """Whether `maybe_save` saves at `step`."""
    return step % self.every_steps == 0

  def maybe_save(self, step: int, state: Any, data_state: Any, config_json: str) -> bool:
    if not self.should_save(step):
      return False
    return self.save(step, state, data_state, config_json)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, dict, int]:
    """Restores (state, data_state, config_dict, step); `abstract_state` leaves are ShapeDtypeStructs whose
    `sharding` places the arrays (any mesh). Raises CheckpointError naming the step and what is wrong."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    step = steps[-1] if step is None else step
    if step not in steps:
      raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; available steps: {steps}")
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
          config=ocp.args.JsonRestore()))
    except Exception as e:  # orbax / tensorstore raise many kinds; name the checkpoint in one error.
      others = [s for s in steps if s != step]
      raise CheckpointError(
          f"checkpoint step {step} in {os.path.join(self.directory, str(step))} is unreadable or does not match "
          f"the model ({type(e).__name__}: {str(e)[:300]}). Other steps here: {others or 'none'}; pass "
          f"--config.checkpoint.restore_step=<step> to use one, or point --workdir elsewhere.") from e
    return restored.state, _decode_data_state(restored.data), dict(restored.config), step

  def read_config(self, step: int | None = None) -> dict:
    """The config saved with a step (latest by default), without touching the arrays."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    step = steps[-1] if step is None else step
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception as e:
      raise CheckpointError(f"config of checkpoint step {step} in {self.directory} is unreadable: {e}") from e
    return dict(restored.config)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` placed by `shardings` (a matching tree of Shardings)."""
  return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
                                tree, shardings)
