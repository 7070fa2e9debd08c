"""Mixture-of-experts layers: `MoEMLP` (top-k or task-conditioned routing) and `MultiGateMoE` (MMoE).

Auxiliary losses are sown into the 'aux_loss' collection already multiplied by their coefficients
('moe_load_balance', 'moe_z_loss'); routing statistics go to 'metrics' as scalars ('moe/drop_fraction',
'moe/expert_load_<e>', with a 'task<t>/' infix for task routers). The train step sums / logs both.

Single-task inference: with `router='task'`, task t only needs the experts its router picks. Measure them
with `active_experts_from_load` on the sown loads, then call the layer with `active_experts=...`: only
those experts' router columns and weights are used (capacity stays that of the full layer, so the output is
unchanged whenever routing stays inside the set). `moe_layer_macs` counts the saving.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mtl.nn import moe_routing, partitioning
from mtl.nn.expert_parallel import expert_parallel_experts
from mtl.nn.moe_experts import ExpertParams, experts_dense, experts_ragged, moe_layer_macs

ROUTERS = ("topk", "task")
IMPLS = ("ragged", "dense", "expert_parallel")

__all__ = ["MoEFields", "MoEMLP", "MultiGateMoE", "active_experts_from_load", "moe_layer_macs", "ROUTERS", "IMPLS"]


def _batched_init(in_axis: int = -2, out_axis: int = -1):
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=in_axis,
                                         out_axis=out_axis, batch_axis=(0,))


def _flatten_tokens(x: jnp.ndarray, layer: str) -> jnp.ndarray:
  if x.ndim not in (2, 3):
    raise ValueError(f"{layer} expects x [B, D] or [B, L, D], got shape {x.shape}")
  return x.reshape(-1, x.shape[-1])


def active_experts_from_load(load: np.ndarray | jnp.ndarray, min_fraction: float = 0.0) -> tuple[int, ...]:
  """Experts whose measured load (fraction of assignments, [E]) exceeds `min_fraction`, in order."""
  load = np.asarray(load)
  if load.ndim != 1:
    raise ValueError(f"load must be a vector [E], got shape {load.shape}")
  active = tuple(int(i) for i in np.nonzero(load > min_fraction)[0])
  if not active:
    raise ValueError(f"no expert has load above {min_fraction}")
  return active



def _expert_params(module: nn.Module, e: int, d: int, hidden: int, out_dim: int) -> ExpertParams:
  """The experts' weights w1 [E, D, F], b1 [E, F], w2 [E, F, D_out], b2 [E, D_out], with logical axis names
  (the leading axis is 'expert', so expert parallelism is one rule: ('expert', 'expert'))."""
  lg = partitioning.logical
  return ExpertParams(module.param("w1", lg(_batched_init(), ("expert", "embed", "mlp")), (e, d, hidden), jnp.float32),
                      module.param("b1", lg(nn.initializers.zeros, ("expert", "mlp")), (e, hidden), jnp.float32),
                      module.param("w2", lg(_batched_init(), ("expert", "mlp", "embed")), (e, hidden, out_dim),
                                   jnp.float32),
                      module.param("b2", lg(nn.initializers.zeros, ("expert", "embed")), (e, out_dim), jnp.float32))

class MoEFields(nn.Module):
  """The attributes shared by `MoEMLP` and `mtl.nn.mh_moe.MultiHeadMoE` (no computation of its own).

  Attributes:
    num_experts: E.
    top_k: experts per token.
    hidden_dim: hidden width H of each expert MLP.
    capacity_factor: slots per expert = ceil(cf * n * k / E) per routing group; <= 0 is dropless.
    eval_capacity_factor: capacity factor when `train=False` (None: same as `capacity_factor`).
    router: 'topk' (one router) or 'task' (a router per task, M3ViT / Mod-Squad; needs `task_id`).
    num_tasks: number of task routers for router='task'.
    impl: 'ragged' (jax.lax.ragged_dot), 'dense' (einsum dispatch reference) or 'expert_parallel'
      (experts sharded over `mesh` axis `expert_axis`, all-to-all dispatch).
    num_groups: tokens are split into this many routing groups (routing and capacity per group).
    out_dim: output dim (None: the input dim D).
    aux_loss_coef, z_loss_coef: weights of the load-balancing and router z-losses.
    renormalize: renormalize the k chosen router probabilities.
    mesh, expert_axis: for impl='expert_parallel'.
    activation: expert hidden activation.
  """
  num_experts: int
  top_k: int = 2
  hidden_dim: int = 256
  capacity_factor: float = 1.25
  eval_capacity_factor: float | None = None
  router: str = "topk"
  num_tasks: int = 1
  impl: str = "ragged"
  num_groups: int = 1
  out_dim: int | None = None
  aux_loss_coef: float = 1e-2
  z_loss_coef: float = 1e-3
  renormalize: bool = True
  mesh: Mesh | None = None
  expert_axis: str = "expert"
  activation: Callable = jax.nn.gelu

  def moe_fields(self) -> dict:
    """This module's `MoEFields` attributes by name (to build a `MoEMLP` with the same configuration)."""
    return {name: getattr(self, name) for name in MoEFields.__dataclass_fields__ if name not in ("parent", "name")}


class MoEMLP(MoEFields):
  """Mixture of expert MLPs with top-k token routing and per-expert capacity (attributes: `MoEFields`)."""

  def _validate(self, task_id, active_experts):
    if self.num_experts < 1 or not 1 <= self.top_k <= self.num_experts:
      raise ValueError(f"MoEMLP: need num_experts >= 1 and 1 <= top_k <= num_experts, got "
                       f"{self.num_experts}, {self.top_k}")
    if self.router not in ROUTERS:
      raise ValueError(f"MoEMLP: unknown router {self.router!r}; expected one of {ROUTERS}")
    if self.impl not in IMPLS:
      raise ValueError(f"MoEMLP: unknown impl {self.impl!r}; expected one of {IMPLS}")
    if self.impl == "expert_parallel" and self.mesh is None:
      raise ValueError("MoEMLP: impl='expert_parallel' needs a mesh")
    if self.hidden_dim < 1 or self.num_groups < 1:
      raise ValueError(f"MoEMLP: hidden_dim and num_groups must be >= 1, got {self.hidden_dim}, "
                       f"{self.num_groups}")
    if self.router == "task":
      if self.num_tasks < 1:
        raise ValueError(f"MoEMLP: num_tasks must be >= 1, got {self.num_tasks}")
      if task_id is None or not 0 <= int(task_id) < self.num_tasks:
        raise ValueError(f"MoEMLP with router='task' needs task_id in [0, {self.num_tasks}), got {task_id!r}")
    if active_experts is not None:
      a = tuple(active_experts)
      if len(set(a)) != len(a) or any(not 0 <= i < self.num_experts for i in a):
        raise ValueError(f"active_experts must be distinct ids in [0, {self.num_experts}), got {a}")
      if len(a) < self.top_k:
        raise ValueError(f"active_experts {a} has fewer than top_k={self.top_k} experts")
      if self.impl == "expert_parallel":
        raise ValueError("active_experts (pruned single-task inference) is not supported with expert_parallel")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, task_id: int | None = None, train: bool = False,
               active_experts: Sequence[int] | None = None) -> jnp.ndarray:
    """x [B, D] or [B, L, D] -> [B, (L,) out_dim]. `task_id` (static int) picks the task router."""
    self._validate(task_id, active_experts)
    d = x.shape[-1]
    out_dim = self.out_dim or d
    tokens = _flatten_tokens(x, "MoEMLP")
    n_total = tokens.shape[0]
    # Parameter shapes depend on neither the groups nor the implementation, so `init` (whatever its example
    # batch, e.g. the loop's batch of 1) runs one group on the single-device dense path.
    initializing = self.is_initializing()
    num_groups = 1 if initializing else self.num_groups
    impl = "dense" if initializing and self.impl == "expert_parallel" else self.impl
    if n_total % num_groups:
      raise ValueError(f"MoEMLP: {n_total} tokens do not split into num_groups={num_groups}")
    e = self.num_experts
    router_shape = (self.num_tasks, d, e) if self.router == "task" else (1, d, e)
    router = self.param("router", partitioning.logical(_batched_init(), (None, "embed", None)), router_shape,
                        jnp.float32)[
        int(task_id) if self.router == "task" else 0]
    p = _expert_params(self, e, d, self.hidden_dim, out_dim)
    ids = None if active_experts is None else jnp.asarray(tuple(active_experts), jnp.int32)
    if ids is not None:
      router = router[:, ids]
      p = ExpertParams(*(a[ids] for a in p))
    p = ExpertParams(*(a.astype(x.dtype) for a in p))

    groups = tokens.reshape(num_groups, n_total // num_groups, d)
    logits = jnp.einsum("gnd,de->gne", groups, router.astype(x.dtype))
    cf = self.capacity_factor if train or self.eval_capacity_factor is None else self.eval_capacity_factor
    capacity = moe_routing.expert_capacity(groups.shape[1], e, self.top_k, cf)
    routing = moe_routing.group_routing(logits, self.top_k, capacity, renormalize=self.renormalize)

    if impl == "dense":
      y = jax.vmap(lambda xg, r: experts_dense(xg, r, p, capacity, self.activation))(groups, routing)
    elif impl == "ragged":
      # Groups only matter for routing / capacity: the grouped matmul runs over all assignments at once.
      flat = moe_routing.Routing(*(None if a is None else a.reshape((-1,) + a.shape[2:]) for a in routing))
      y = experts_ragged(tokens, flat, p, self.activation)
    else:
      y = expert_parallel_experts(groups, routing, p, capacity, self.mesh, self.expert_axis, self.activation)

    self._sow_losses_and_metrics(logits, routing, ids, task_id)
    return y.reshape(x.shape[:-1] + (out_dim,))

  def _sow_losses_and_metrics(self, logits, routing, ids, task_id):
    self.sow("aux_loss", "moe_load_balance",
             self.aux_loss_coef * moe_routing.load_balancing_loss(routing.probs, routing.expert_index))
    self.sow("aux_loss", "moe_z_loss", self.z_loss_coef * moe_routing.router_z_loss(logits))
    infix = f"task{int(task_id)}/" if self.router == "task" else ""
    index = routing.expert_index if ids is None else ids[routing.expert_index]
    load = moe_routing.expert_load(index, self.num_experts)
    self.sow("metrics", f"moe/{infix}drop_fraction", moe_routing.drop_fraction(routing.kept))
    for i in range(self.num_experts):
      self.sow("metrics", f"moe/{infix}expert_load_{i}", load[i])


class MultiGateMoE(nn.Module):
  """Multi-gate mixture of experts (MMoE, Ma et al. 2018): shared experts, one softmax gate per task.

  Attributes:
    num_experts: E expert MLPs shared by all tasks.
    hidden_dim: hidden width of each expert.
    num_tasks: T gates.
    out_dim: expert output dim (None: input dim).
    top_k: None for the dense mixture (every expert runs); an int keeps each task's k largest gates
      (renormalized) and runs only those experts per token (grouped matmul, dropless).
    aux_loss_coef: load-balancing loss weight per task gate (only with top_k).

  Call: x [B, D] or [B, L, D] -> {task index: [B, (L,) out_dim]} for the tasks in `task_ids` (default all).
  """
  num_experts: int
  hidden_dim: int
  num_tasks: int
  out_dim: int | None = None
  top_k: int | None = None
  aux_loss_coef: float = 1e-2
  activation: Callable = jax.nn.gelu

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False, task_ids: Sequence[int] | None = None
               ) -> dict[int, jnp.ndarray]:
    del train
    if self.num_experts < 1 or self.num_tasks < 1 or self.hidden_dim < 1:
      raise ValueError(f"MultiGateMoE: num_experts, num_tasks, hidden_dim must be >= 1, got "
                       f"{self.num_experts}, {self.num_tasks}, {self.hidden_dim}")
    if self.top_k is not None and not 1 <= self.top_k <= self.num_experts:
      raise ValueError(f"MultiGateMoE: top_k must be None or in [1, {self.num_experts}], got {self.top_k}")
    task_ids = tuple(range(self.num_tasks)) if task_ids is None else tuple(int(t) for t in task_ids)
    if not task_ids or any(not 0 <= t < self.num_tasks for t in task_ids):
      raise ValueError(f"MultiGateMoE: task_ids must be in [0, {self.num_tasks}), got {task_ids}")
    d = x.shape[-1]
    out_dim = self.out_dim or d
    tokens = _flatten_tokens(x, "MultiGateMoE")
    e = self.num_experts
    gates = self.param("gates", partitioning.logical(_batched_init(), (None, "embed", None)),
                       (self.num_tasks, d, e), jnp.float32)
    p = _expert_params(self, e, d, self.hidden_dim, out_dim)
    p = ExpertParams(*(a.astype(x.dtype) for a in p))
    out = {}
    if self.top_k is None:
      h = self.activation(jnp.einsum("nd,edh->neh", tokens, p.w1) + p.b1)
      expert_out = jnp.einsum("neh,eho->neo", h, p.w2) + p.b2  # [N, E, O]
      for t in task_ids:
        g = jax.nn.softmax(tokens @ gates[t].astype(x.dtype), axis=-1)  # [N, E]
        out[t] = jnp.einsum("ne,neo->no", g, expert_out)
    else:
      n = tokens.shape[0]
      for t in task_ids:
        logits = tokens @ gates[t].astype(x.dtype)
        routing = moe_routing.top_k_routing(logits, self.top_k, n)  # capacity n: dropless
        self.sow("aux_loss", f"mmoe_load_balance_task{t}",
                 self.aux_loss_coef * moe_routing.load_balancing_loss(routing.probs, routing.expert_index))
        out[t] = experts_ragged(tokens, routing, p, self.activation)
    return {t: v.reshape(x.shape[:-1] + (out_dim,)) for t, v in out.items()}
