"""Logical axis names of parameters and activations (flax `nn.Partitioned` metadata).

Layers name each parameter dimension with one of `AXES`; `mtl.sharding` maps names to mesh axes with the rules in
`config.sharding.logical_rules` (presets in configs/common.py). A dimension with no rule is replicated.

The names are attached (as `nn.Partitioned` boxes) only while an initialisation is traced under
`annotate_axes()`, which is what the training loop does to plan shardings; anywhere else `model.init` returns
plain arrays, so user code and tests index parameters as usual.

  embed   model / channel dimension a layer reads (input features of a kernel, the residual stream)
  mlp     hidden / output features of a kernel
  heads   attention heads;  kv: per-head dimension;  vocab: vocabulary rows / logits
  expert  the expert axis of MoE weights;  norm: scale / bias of a normalisation layer
  batch   the leading axis of activations;  length: sequence / token axis of activations
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import flax.linen as nn
import jax

AXES = ("embed", "mlp", "heads", "kv", "vocab", "expert", "norm", "batch", "length")


_annotating = [0]


@contextlib.contextmanager
def annotate_axes() -> Iterator[None]:
  """Within this context, parameters created by `logical` initialisers are boxed with their axis names."""
  _annotating[0] += 1
  try:
    yield
  finally:
    _annotating[0] -= 1


def logical(init_fn: Callable, axes: Sequence[str | None]) -> Callable:
  """`init_fn` whose value is boxed with logical axis names `axes` (one per dimension; None = unnamed) when
  created under `annotate_axes()`, and plain otherwise."""
  unknown = [a for a in axes if a is not None and a not in AXES]
  if unknown:
    raise ValueError(f"unknown logical axis names {unknown}; known: {AXES}")
  boxed = nn.with_logical_partitioning(init_fn, tuple(axes))

  def init(*args, **kwargs):
    return (boxed if _annotating[0] else init_fn)(*args, **kwargs)
  return init


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation by logical names; a no-op outside `mtl.sharding.activation_rules`."""
  if len(axes) != x.ndim:
    raise ValueError(f"constrain: {len(axes)} axis names {tuple(axes)} for an array of rank {x.ndim}")
  return nn.with_logical_constraint(x, tuple(axes))
