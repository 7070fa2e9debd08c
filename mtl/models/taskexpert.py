"""TaskExpert (Ye & Xu, ICCV 2023) and a mixture-of-experts ViT encoder, with per-task heads.

Backbone: patch embedding (images [B, H, W, C]) or a linear stem (features [B, F] -> one token), then
`depth` pre-LN transformer blocks; the MLP of every `moe_every`-th block is a `MoEMLP` (0: all dense).
With `router='task'` each task routes its own tokens, so the backbone runs once per task (M3ViT).

variant='moe': task t's features are the final backbone tokens (of its own pass when routing per task).
variant='taskexpert': at every layer l the backbone tokens F_l are decomposed by `te_experts` expert MLPs
into task-generic features; a gate per task (softmax over te_experts + 1, per token) assembles them together
with the task's feature memory M_t (the extra expert) into A_t^l, and the memory is updated as
M_t^l = LayerNorm(M_t^{l-1} + A_t^l) (M_t^0 is a learned per-task vector). Heads read M_t^L.

Heads (`TaskHead`): LayerNorm + Dense to num_outputs, on mean-pooled tokens (classification / binary) or
per token, reshaped to the patch grid and bilinearly resized to the input size (dense tasks).

Gate utilisation goes to 'metrics' as 'taskexpert/<task>/gate_<e>' and '.../gate_memory' (mean over tokens
and layers); MoE routing statistics and aux losses come from `MoEMLP`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jax.sharding import Mesh

from mtl.models.heads import head_name
from mtl.models.registry import MODELS
from mtl.nn.expert_parallel import token_group_devices
from mtl.nn.mh_moe import MultiHeadMoE
from mtl.nn.moe import IMPLS, ROUTERS, MoEMLP
from mtl.tasks.base import TaskSpec

VARIANTS = ("taskexpert", "moe")


class TaskHead(nn.Module):
  """LayerNorm + Dense head. tokens [B, N, D] -> [B, num_outputs], or [B, H, W, num_outputs] if `dense`.

  Attributes:
    num_outputs: output channels.
    dense: per-token prediction on the (gh, gw) patch grid, resized to `out_hw`.
    out_hw: output (H, W) of dense heads.
  """
  num_outputs: int
  dense: bool = False
  out_hw: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, *, grid_hw: tuple[int, int] | None = None, train: bool = False
               ) -> jnp.ndarray:
    del train
    if tokens.ndim != 3:
      raise ValueError(f"TaskHead expects tokens [B, N, D], got shape {tokens.shape}")
    if not self.dense:
      return nn.Dense(self.num_outputs, name="out")(nn.LayerNorm(name="norm")(jnp.mean(tokens, axis=1)))
    if grid_hw is None or self.out_hw is None or grid_hw[0] * grid_hw[1] != tokens.shape[1]:
      raise ValueError(f"dense TaskHead needs image inputs: grid {grid_hw}, out_hw {self.out_hw}, "
                       f"{tokens.shape[1]} tokens")
    y = nn.Dense(self.num_outputs, name="out")(nn.LayerNorm(name="norm")(tokens))
    y = y.reshape(tokens.shape[0], grid_hw[0], grid_hw[1], self.num_outputs)
    return jax.image.resize(y, (y.shape[0],) + tuple(self.out_hw) + (self.num_outputs,), "bilinear")


class _Stem(nn.Module):
  patch_size: int
  dim: int

  @nn.compact
  def __call__(self, x):
    if x.ndim == 2:
      return nn.Dense(self.dim, name="embed")(x)[:, None, :], None
    if x.ndim != 4:
      raise ValueError(f"TaskExpertModel expects images [B, H, W, C] or features [B, F], got {x.shape}")
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f"image size {x.shape[1:3]} is not a multiple of patch_size {p}")
    x = nn.Conv(self.dim, (p, p), (p, p), padding="VALID", name="embed")(x)
    b, gh, gw, d = x.shape
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, gh * gw, d))
    return x.reshape(b, gh * gw, d) + pos, (gh, gw)


class _Block(nn.Module):
  """Pre-LN transformer block; MLP dense or MoE."""
  dim: int
  num_heads: int
  mlp_dim: int
  moe: Mapping[str, Any] | None = None

  @nn.compact
  def __call__(self, x, *, task_id, train):
    y = nn.LayerNorm(name="norm1")(x)
    x = x + nn.MultiHeadDotProductAttention(self.num_heads, qkv_features=self.dim, name="attn")(y, y)
    y = nn.LayerNorm(name="norm2")(x)
    if self.moe is None:
      y = nn.Dense(self.dim, name="mlp_out")(nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(y)))
    else:
      layer = MultiHeadMoE if "num_heads" in self.moe else MoEMLP
      y = layer(hidden_dim=self.mlp_dim, name="moe", **self.moe)(y, task_id=task_id, train=train)
    return x + y


class _TaskExpertLayer(nn.Module):
  """Decomposes F_l [B, N, D] with expert MLPs and assembles one feature per task with its memory."""
  num_experts: int
  hidden_dim: int
  task_names: tuple[str, ...]

  @nn.compact
  def __call__(self, feats: Mapping[int, jnp.ndarray], memory: Mapping[int, jnp.ndarray]
               ) -> tuple[dict[int, jnp.ndarray], dict[int, jnp.ndarray]]:
    """feats: task index -> backbone tokens F_l [B, N, D] (one shared array unless routing is per task);
    memory: task index -> M_t^{l-1} [B, N, D]. Returns (M_t^l, mean gate [E + 1]) for the same tasks."""
    d, e = next(iter(feats.values())).shape[-1], self.num_experts
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1,
                                            batch_axis=(0,))
    w1 = self.param("expert_w1", init, (e, d, self.hidden_dim))
    b1 = self.param("expert_b1", nn.initializers.zeros, (e, self.hidden_dim))
    w2 = self.param("expert_w2", init, (e, self.hidden_dim, d))
    b2 = self.param("expert_b2", nn.initializers.zeros, (e, d))
    norm = nn.LayerNorm(name="norm")
    cache = {}
    new_memory, gates = {}, {}
    for t, f in feats.items():
      name = self.task_names[t]
      if id(f) not in cache:  # shared backbone features are decomposed once
        x = norm(f)
        h = nn.gelu(jnp.einsum("bnd,edh->bneh", x, w1) + b1)
        cache[id(f)] = (x, jnp.einsum("bneh,ehd->bned", h, w2) + b2)  # [B, N, E, D]
      x, experts = cache[id(f)]
      g = jax.nn.softmax(nn.Dense(e + 1, name=f"gate_{name}")(x), axis=-1)  # [B, N, E + 1]
      candidates = jnp.concatenate([experts, memory[t][:, :, None, :]], axis=2)
      assembled = jnp.einsum("bne,bned->bnd", g, candidates)
      new_memory[t] = nn.LayerNorm(name=f"memory_norm_{name}")(memory[t] + assembled)
      gates[t] = jnp.mean(g, axis=(0, 1))
    return new_memory, gates


class TaskExpertModel(nn.Module):
  """Transformer backbone (optionally MoE) + TaskExpert or plain per-task features + per-task heads.

  Attributes:
    task_names: tasks in order (task index = router / gate index).
    heads: task name -> head module, called as `head(tokens [B, N, D], grid_hw=..., train=...)`.
    variant: 'taskexpert' or 'moe' (see module docstring).
    patch_size, dim, depth, num_heads, mlp_ratio: backbone.
    moe_every: every `moe_every`-th block (1-based: blocks moe_every-1, 2*moe_every-1, ...) has an MoE MLP;
      0 disables MoE.
    num_experts, top_k, capacity_factor, eval_capacity_factor, router, moe_impl, aux_loss_coef, z_loss_coef:
      MoEMLP settings (router 'task' gives each task its own router and backbone pass).
    te_experts, te_hidden: TaskExpert expert networks per layer and their hidden width.
    moe_heads: > 1 makes the MoE MLPs Multi-Head MoE layers (mtl/nn/mh_moe.py) with that many sub-tokens.
    moe_hidden: expert hidden width of the MoE MLPs (0: dim * mlp_ratio, as the dense MLPs).
    moe_groups: routing groups per MoE layer (routing and capacity are per group); 0 = automatic: one per
      device the tokens are split over for moe_impl='expert_parallel', else 1.
    mesh: the device mesh, needed by moe_impl='expert_parallel' (set by `build_taskexpert(..., mesh=)`, not
      by the config).
  """
  task_names: tuple[str, ...]
  heads: Mapping[str, nn.Module]
  variant: str = "taskexpert"
  patch_size: int = 4
  dim: int = 64
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: float = 2.0
  moe_every: int = 0
  num_experts: int = 8
  top_k: int = 2
  capacity_factor: float = 1.25
  eval_capacity_factor: float | None = None
  router: str = "topk"
  moe_impl: str = "ragged"
  aux_loss_coef: float = 1e-2
  z_loss_coef: float = 1e-3
  te_experts: int = 8
  te_hidden: int = 32
  moe_groups: int = 0
  moe_heads: int = 1
  moe_hidden: int = 0
  mesh: Mesh | None = None

  def _validate(self):
    if not self.task_names or len(set(self.task_names)) != len(self.task_names):
      raise ValueError(f"TaskExpertModel: task_names must be non-empty and distinct, got {self.task_names}")
    if set(self.heads) != set(self.task_names):
      raise ValueError(f"TaskExpertModel: heads {sorted(self.heads)} != tasks {sorted(self.task_names)}")
    if self.variant not in VARIANTS:
      raise ValueError(f"TaskExpertModel: unknown variant {self.variant!r}; expected one of {VARIANTS}")
    if self.dim % self.num_heads or self.depth < 1 or self.moe_every < 0:
      raise ValueError(f"TaskExpertModel: need dim % num_heads == 0, depth >= 1, moe_every >= 0; got "
                       f"dim={self.dim}, num_heads={self.num_heads}, depth={self.depth}, "
                       f"moe_every={self.moe_every}")
    if self.router not in ROUTERS or self.moe_impl not in IMPLS:
      raise ValueError(f"TaskExpertModel: router {self.router!r} / moe_impl {self.moe_impl!r} unknown; "
                       f"expected {ROUTERS} / {IMPLS}")
    if self.moe_heads < 1 or self.moe_hidden < 0 or self.dim % self.moe_heads:
      raise ValueError(f"TaskExpertModel: need moe_heads >= 1 dividing dim and moe_hidden >= 0, got "
                       f"moe_heads={self.moe_heads}, moe_hidden={self.moe_hidden}, dim={self.dim}")
    if self.moe_groups < 0:
      raise ValueError(f"TaskExpertModel: moe_groups must be >= 0 (0 = automatic), got {self.moe_groups}")
    if self.moe_impl == "expert_parallel" and self.moe_every > 0 and self.mesh is None:
      raise ValueError("TaskExpertModel: moe_impl='expert_parallel' needs the device mesh; build the model with "
                       "mtl.models.multitask.build_model(..., mesh=mesh) (the training loop does)")
    if self.variant == "taskexpert" and (self.te_experts < 1 or self.te_hidden < 1):
      raise ValueError(f"TaskExpertModel: te_experts and te_hidden must be >= 1, got {self.te_experts}, "
                       f"{self.te_hidden}")

  def _num_groups(self) -> int:
    if self.moe_groups:
      return self.moe_groups
    return token_group_devices(self.mesh) if self.moe_impl == "expert_parallel" else 1

  def _is_moe(self, i: int) -> bool:
    return self.moe_every > 0 and i % self.moe_every == self.moe_every - 1

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False, tasks: Sequence[str] | None = None
               ) -> dict[str, jnp.ndarray]:
    """x [B, H, W, C] or [B, F] -> task name -> outputs; `tasks` restricts which tasks run (default all).

    With per-task routing, single-task inference (`tasks=(name,)`) runs only that task's backbone pass.
    """
    self._validate()
    names = tuple(self.task_names) if tasks is None else tuple(tasks)
    unknown = [n for n in names if n not in self.task_names]
    if unknown or not names:
      raise ValueError(f"TaskExpertModel: unknown or empty tasks {list(names)}; tasks: {self.task_names}")
    task_idx = [self.task_names.index(n) for n in names]
    moe_cfg = dict(num_experts=self.num_experts, top_k=self.top_k, capacity_factor=self.capacity_factor,
                   eval_capacity_factor=self.eval_capacity_factor, router=self.router,
                   num_tasks=len(self.task_names), impl=self.moe_impl, aux_loss_coef=self.aux_loss_coef,
                   z_loss_coef=self.z_loss_coef, num_groups=self._num_groups(), mesh=self.mesh,
                   **({"num_heads": self.moe_heads} if self.moe_heads > 1 else {}))
    tokens, grid = _Stem(self.patch_size, self.dim, name="stem")(x)
    mlp_dim, moe_dim = int(self.dim * self.mlp_ratio), self.moe_hidden or int(self.dim * self.mlp_ratio)
    blocks = [_Block(self.dim, self.num_heads, moe_dim if self._is_moe(i) else mlp_dim,
                     moe=moe_cfg if self._is_moe(i) else None, name=f"block{i}") for i in range(self.depth)]
    per_task = self.router == "task" and self.moe_every > 0
    passes = task_idx if per_task else [None]  # backbone passes: one per task with task routers
    feats = {p: tokens for p in passes}
    te_layers = [_TaskExpertLayer(self.te_experts, self.te_hidden, self.task_names, name=f"taskexpert{i}")
                 for i in range(self.depth)] if self.variant == "taskexpert" else None
    memory, gate_sums = None, None
    if te_layers is not None:
      mem0 = self.param("memory_init", nn.initializers.normal(0.02), (len(self.task_names), self.dim))
      memory = {t: jnp.broadcast_to(mem0[t], tokens.shape) for t in task_idx}
    for i, block in enumerate(blocks):
      feats = {p: block(f, task_id=p, train=train) for p, f in feats.items()}
      if te_layers is not None:
        memory, gates = te_layers[i]({t: feats[t if per_task else None] for t in task_idx}, memory)
        gate_sums = gates if gate_sums is None else {t: gate_sums[t] + g for t, g in gates.items()}
    final_norm = nn.LayerNorm(name="final_norm")
    out = {}
    for name, t in zip(names, task_idx):
      if te_layers is not None:
        task_tokens = memory[t]
        g = gate_sums[t] / self.depth
        for e in range(self.te_experts):
          self.sow("metrics", f"taskexpert/{name}/gate_{e}", g[e])
        self.sow("metrics", f"taskexpert/{name}/gate_memory", g[-1])
      else:
        task_tokens = final_norm(feats[t if per_task else None])
      out[name] = self.heads[name](task_tokens, grid_hw=grid, train=train)
    return out


@MODELS.register("taskexpert")
def build_taskexpert(model_cfg: ml_collections.ConfigDict, tasks: tuple[TaskSpec, ...],
                     input_shape: tuple[int, ...], mesh: Mesh | None = None) -> TaskExpertModel:
  """`config.model` (name='taskexpert') -> TaskExpertModel; keys other than name/encoder/head are attributes.

  `mesh` is the training mesh (used by moe_impl='expert_parallel', whose experts live on its 'expert' axis).
  """
  cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()
            if k not in ("name", "encoder", "head")}
  fields = set(TaskExpertModel.__dataclass_fields__) - {"task_names", "heads", "parent", "name", "mesh"}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(f"unknown taskexpert model config keys {unknown}; known: {sorted(fields)}")
  out_hw = tuple(input_shape[:2]) if len(input_shape) == 3 else None
  heads = {}
  for t in tasks:
    dense = head_name(t, model_cfg.get("head", {})) == "dense"
    if dense and out_hw is None:
      raise ValueError(f"task {t.name!r} ({t.kind}) needs image inputs, got input shape {input_shape}")
    heads[t.name] = TaskHead(t.num_outputs, dense=dense, out_hw=out_hw if dense else None)
  return TaskExpertModel(task_names=tuple(t.name for t in tasks), heads=heads, mesh=mesh, **kwargs)
