"""Expert parallelism: experts sharded over a mesh axis, tokens exchanged with all-to-all inside shard_map.

Layout over the `expert` axis of size P: routing groups G (a multiple of P) are split over devices, and so
are the E experts (a multiple of P; device d owns experts [d*E/P, (d+1)*E/P)). Each device builds its
groups' capacity buffers [E, g, C, D] by einsum dispatch, an all-to-all sends every expert's buffers to the
device owning it, the local experts run on [P, E/P, g, C, D], and a second all-to-all returns the results.
Because routing and capacity are per group, the result equals `experts_dense` applied group by group.

The batch axes of the mesh (`data`, `fsdp`, see mtl/sharding.py) also split the groups: each (data, fsdp)
slice runs its own all-to-all over the expert axis with its own tokens, and the expert weights are
replicated over those axes (their gradients are summed over them by shard_map's transpose).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from mtl.nn.moe_experts import ExpertParams, check_expert_params, dispatch_and_combine, expert_mlp_buffers
from mtl.nn.moe_routing import Routing
from mtl.sharding import BATCH_AXES


def token_group_devices(mesh: Mesh, axis_name: str = "expert") -> int:
  """Number of devices the routing groups are split over: the batch axes of `mesh` and `axis_name`."""
  return math.prod(mesh.shape[a] for a in _token_axes(mesh, axis_name))


def _token_axes(mesh: Mesh, axis_name: str) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names and a != axis_name) + (axis_name,)


def expert_parallel_experts(x: jnp.ndarray, routing: Routing, p: ExpertParams, capacity: int, mesh: Mesh,
                            axis_name: str = "expert", activation: Callable = jax.nn.gelu) -> jnp.ndarray:
  """Routed expert MLPs with experts sharded over `axis_name`.

  Args:
    x: [G, N, D] tokens in G routing groups (G divisible by the product of the batch axes and the expert
      axis sizes).
    routing: per-group routing, fields [G, N, k] / probs [G, N, E].
    p: expert parameters with leading expert axis E (divisible by the axis size).
    capacity: slots per expert per group.
    mesh: a mesh with axis `axis_name`; groups are also split over its axes named in `BATCH_AXES`, any other
      axis is left replicated.

  Returns: [G, N, D_out], equal to `experts_dense` on each group.
  """
  if axis_name not in mesh.axis_names:
    raise ValueError(f"mesh axes {mesh.axis_names} have no {axis_name!r} axis")
  if x.ndim != 3:
    raise ValueError(f"expert_parallel_experts expects tokens [G, N, D], got shape {x.shape}")
  check_expert_params(p, x.shape[-1])
  size = mesh.shape[axis_name]
  token_axes = _token_axes(mesh, axis_name)
  token_devices = token_group_devices(mesh, axis_name)
  g, e = x.shape[0], p.w1.shape[0]
  if g % token_devices or e % size:
    raise ValueError(f"expert parallelism needs groups ({g}) divisible by the {token_devices} devices of mesh "
                     f"axes {token_axes} and experts ({e}) divisible by the {size} devices of {axis_name!r}")

  def local(x, index, weight, position, kept, w1, b1, w2, b2):
    routing_local = Routing(index, weight, position, kept, None)
    dispatch, combine = jax.vmap(lambda r: dispatch_and_combine(r, e, capacity))(routing_local)  # [g, N, E, C]
    xin = jnp.einsum("gnec,gnd->egcd", dispatch.astype(x.dtype), x)  # [E, g, C, D]
    xin = xin.reshape((size, e // size) + xin.shape[1:])  # [P (owner), E/P, g, C, D]
    xin = jax.lax.all_to_all(xin, axis_name, 0, 0, tiled=True)  # [P (source), E/P, g, C, D]
    y = expert_mlp_buffers(xin.transpose(0, 2, 1, 3, 4), ExpertParams(w1, b1, w2, b2), activation)
    y = jax.lax.all_to_all(y.transpose(0, 2, 1, 3, 4), axis_name, 0, 0, tiled=True)  # [P (owner), E/P, g, C, O]
    y = y.reshape((e,) + y.shape[2:])  # [E, g, C, O]
    return jnp.einsum("gnec,egco->gno", combine.astype(y.dtype), y)

  tokens, experts = P(token_axes), P(axis_name)
  fn = jax.shard_map(local, mesh=mesh, in_specs=(tokens,) * 5 + (experts,) * 4, out_specs=tokens)
  return fn(x, routing.expert_index, routing.weight, routing.position, routing.kept, p.w1, p.b1, p.w2, p.b2)
