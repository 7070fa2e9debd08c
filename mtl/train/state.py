"""The train state: everything a checkpoint holds besides the data-iterator position and the config."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """All arrays; the model, optimizer and multi-task method are static and live outside.

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: model parameters.
    model_state: other model collections (e.g. {'batch_stats': ...}); {} when none.
    opt_state: optax optimizer state.
    mtl_state: state of the multi-task method (loss weights, ...).
    rng: PRNG key; step k uses fold_in(rng, k), so resuming reproduces the same randomness.
  """
  step: jnp.ndarray
  params: Any
  model_state: Any
  opt_state: Any
  mtl_state: Any
  rng: jax.Array


def param_count(params: Any) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
