"""Mesh construction and sharding of batches and parameters.

Mesh axes are named `data`, `fsdp`, `tensor`, `expert`. The batch is split over (`data`, `fsdp`, `expert`): the
expert axis doubles as data parallelism for every non-expert layer (as in GShard and MaxText), and MoE layers
with `impl='expert_parallel'` exchange tokens over it. Parameters carry logical axis names
(mtl/nn/partitioning.py) mapped to mesh axes by `config.sharding.logical_rules`; leaves without names fall back
to the path regexes of `config.sharding.rules` (see `state_shardings`). Everything else is replicated.

The train state is born sharded: `mtl.train.loop` traces the initialisation abstractly (`jax.eval_shape`),
derives the shardings from the abstract state, and runs the initialisation under `jax.jit(...,
out_shardings=...)`, so no device ever holds more than its shard of the parameters and optimizer state.
"""
from __future__ import annotations

import contextlib
import math
import re
from typing import Any, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor", "expert")
BATCH_AXES = ("data", "fsdp", "expert")


def make_mesh(axis_sizes: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a mesh over `devices` (default: all) with axes `MESH_AXES`.

  Args:
    axis_sizes: axis name -> size; at most one size may be -1 (takes the remaining devices). Missing axes
      get size 1; the default puts every device on `data`.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = {a: 1 for a in MESH_AXES}
  given = dict(axis_sizes or {"data": -1})
  unknown = set(given) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"unknown mesh axes {sorted(unknown)}; known axes: {MESH_AXES}")
  free = [a for a, s in given.items() if s == -1]
  if len(free) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {free}")
  for a, s in given.items():
    if s != -1 and (not isinstance(s, int) or s < 1):
      raise ValueError(f"mesh axis {a!r} must have a positive size or -1, got {s!r}")
    sizes[a] = s
  fixed = math.prod(s for a, s in sizes.items() if s != -1)
  if free:
    if len(devices) % fixed:
      raise ValueError(f"{len(devices)} devices do not divide by the fixed mesh axes {given}")
    sizes[free[0]] = len(devices) // fixed
  if math.prod(sizes.values()) != len(devices):
    raise ValueError(f"mesh {sizes} needs {math.prod(sizes.values())} devices, {len(devices)} are available")
  grid = np.asarray(devices).reshape([sizes[a] for a in MESH_AXES])
  return Mesh(grid, MESH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data-parallel axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a host-local numpy batch onto the mesh, split along the batch axis.

  With several processes, each process passes its own slice of the global batch.
  """
  sharding = batch_sharding(mesh)
  n = data_parallel_size(mesh)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    if v.ndim == 0:
      raise ValueError(f"batch entry {k!r} is a scalar; every entry needs a leading batch axis")
    global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
    if global_shape[0] % n:
      raise ValueError(f"global batch size {global_shape[0]} is not divisible by the {n} data-parallel devices")
    if jax.process_count() == 1:
      out[k] = jax.device_put(v, sharding)  # splits on the host: no per-shape device computations
    else:
      out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
  return out


def _spec_for(path: str, shape: tuple[int, ...], rules: Sequence[tuple[str, Any]], mesh: Mesh) -> P:
  """First rule whose regex matches `path` decides the spec.

  A rule's target is either a PartitionSpec-like tuple (one entry per dimension: axis name, tuple of names or
  None), or the string 'fsdp' / 'tensor' / 'expert': shard the largest dimension divisible by that axis size.
  """
  for pattern, target in rules:
    if not re.fullmatch(pattern, path):
      continue
    if target is None or target == "replicated":
      return P()
    if isinstance(target, str):
      size = mesh.shape[target]
      if size == 1:
        return P()
      dims = sorted(range(len(shape)), key=lambda d: -shape[d])
      for d in dims:
        if shape[d] % size == 0:
          spec = [None] * len(shape)
          spec[d] = target
          return P(*spec)
      return P()
    spec = tuple(target)
    if len(spec) != len(shape):
      raise ValueError(f"sharding rule {pattern!r} gives {spec} for {path} of rank {len(shape)}")
    for dim, axes in zip(shape, spec):
      names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
      size = math.prod(mesh.shape[a] for a in names)
      if dim % size:
        raise ValueError(f"sharding rule {pattern!r}: dim {dim} of {path} {shape} does not divide by {names}")
    return P(*spec)
  return P()


def path_str(path) -> str:
  """'params/encoder/Dense_0/kernel' style name of a pytree key path."""
  parts = []
  for k in path:
    parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
  return "/".join(parts)


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]] = ()) -> Any:
  """NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs) from regex `rules` on leaf paths."""
  def one(path, leaf):
    shape = tuple(getattr(leaf, "shape", ()))
    return NamedSharding(mesh, _spec_for(path_str(path), shape, rules, mesh) if shape else P())
  return jax.tree_util.tree_map_with_path(one, tree)


LogicalRules = Sequence[tuple[str, Any]]


def _logical_spec(names: tuple, shape: tuple[int, ...], rules: LogicalRules, mesh: Mesh) -> P:
  """Mesh PartitionSpec of one parameter from its logical axis names (first matching rule per name).

  A mesh axis is used at most once per parameter (a later dimension naming it stays replicated), and a
  dimension that does not divide by its mesh axes is replicated (e.g. 3 class logits over 2 'tensor' devices).
  """
  table = {}
  for name, target in rules:
    table.setdefault(name, target)
  used, spec = set(), []
  for dim, name in zip(shape, names):
    target = table.get(name) if name is not None else None
    axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
    unknown = [a for a in axes if a not in mesh.shape]
    if unknown:
      raise ValueError(f"logical sharding rule {name!r} -> {target!r} names unknown mesh axes {unknown}; "
                       f"mesh axes: {tuple(mesh.shape)}")
    axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
    if not axes or dim % math.prod(mesh.shape[a] for a in axes):
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def state_shardings(abstract: Any, mesh: Mesh, logical_rules: LogicalRules = (),
                    rules: Sequence[tuple[str, Any]] = ()) -> Any:
  """NamedSharding per leaf of an abstract state whose leaves may be boxed in `nn.Partitioned`.

  Boxed leaves (parameters and, through `tx.init`, their optimizer moments) are placed by `logical_rules`
  ((logical name, mesh axis | tuple of axes | None), first match wins); unboxed leaves by the path regexes
  `rules` (see `_spec_for`). The result has the structure of the *unboxed* state.
  """
  def one(path, leaf):
    if isinstance(leaf, nn.Partitioned):
      value = leaf.value
      spec = _logical_spec(tuple(leaf.names), tuple(value.shape), logical_rules, mesh)
      if all(s is None for s in spec) and rules:
        spec = _spec_for(path_str(path), tuple(value.shape), rules, mesh)
      return NamedSharding(mesh, spec)
    shape = tuple(getattr(leaf, "shape", ()))
    return NamedSharding(mesh, _spec_for(path_str(path), shape, rules, mesh) if shape else P())
  return jax.tree_util.tree_map_with_path(one, abstract, is_leaf=lambda x: isinstance(x, nn.Partitioned))


@contextlib.contextmanager
def activation_rules(mesh: Mesh, logical_rules: LogicalRules) -> Iterator[None]:
  """Context in which `mtl.nn.partitioning.constrain` (flax logical constraints) shards activations on `mesh`.

  Wrap the *tracing* of a jitted function in it (the first call, or `.lower`). The activation name 'batch' maps
  to the batch axes (BATCH_AXES); the other names follow `logical_rules`.
  """
  rules = (("batch", BATCH_AXES),) + tuple((n, t) for n, t in logical_rules if n != "batch")
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield
