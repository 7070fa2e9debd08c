"""Task-expert tower models for tabular / recommendation multi-task learning, on named feature specs.

All models read x [B, F] through `TabularInput` (named dense / categorical features, mtl/models/tabular.py),
build one representation per task, and end in a tower per task (an MLP, `tower_hidden` then num_outputs).
Experts are MLPs (`expert_hidden`; the last entry is the expert output width H). Gates are softmax(Dense(input)).

arch='shared_bottom': one MLP (`bottom_hidden`) shared by all towers (Caruana 1997; MMoE's baseline).
arch='mmoe' (Ma et al. 2018): `num_shared_experts` experts on the input; task t's tower reads
  sum_e softmax(W_t x)_e E_e(x).
arch='cgc' / 'ple' (Tang et al. 2020): each extraction level has `num_shared_experts` shared experts and
  `num_task_experts` experts per task. Task t's gate (input: its own stream x_t) mixes its own and the shared
  experts only; the shared stream's gate (input x_s) mixes every expert of the level and feeds the next
  level's shared experts (the last level has no shared gate). Level 1 reads x for every stream. 'cgc' is
  one level; 'ple' has `num_levels`.
arch='adatt' (Li et al. 2023): each fusion level has `num_task_experts` experts per task (on the task's
  stream) and optionally `num_shared_experts` shared ones (on the shared stream; 0 is AdaTT-sp). Task t's
  fusion unit is  softmax(W_t x_t) . [all experts of the level]  +  v_t . [its own experts]  (the native
  experts' linear fusion, a residual; v_t is learned, initialised uniform in +-1/sqrt(K) as in the authors'
  code, and fixed to 1 for a single native expert).
arch='home' (Wang et al. 2024, Kuaishou): two levels with a hierarchy of experts. Tasks fall into
  `task_groups` (group id per task; default one group per task). Level 1: `num_shared_experts` global and
  `num_group_experts` per-group experts on the input; level 2: as many global and group experts again plus
  `num_task_experts` per task. Hierarchy masks: a group's gate sees only its group's and the global experts;
  a task's gate only its own, its group's and the global ones; the global stream's gate sees everything.
  Expert normalisation: every expert layer is Dense -> BatchNorm -> Swish, so the outputs that gates mix
  have matched scales (the paper's fix for expert collapse). Feature gates (`feature_gate_rank` r > 0): each
  level-1 expert reads x * 2 sigmoid(B_e A_e x) with a rank-r map (LoRA-style) of its own. Self gates
  (`self_gate`): a group's / task's output adds sum_k sigmoid(U x)_k E_k over its own experts (a gated
  residual, so the gradient reaches the private experts without passing the softmax).
  Level 2's global experts read the level-1 global stream, group and task experts their group's stream.

Metrics sown to 'metrics' per task (last level's gate): 'towers/<task>/gate_entropy' (nats) and, where the
task has experts of its own, 'towers/<task>/own_weight' (the gate weight on them).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mtl.models.registry import MODELS
from mtl.nn import partitioning
from mtl.models.tabular import FeatureSpec, TabularInput, parse_features
from mtl.tasks.base import TaskSpec

ARCHS = ("shared_bottom", "mmoe", "cgc", "ple", "adatt", "home")
ACTIVATIONS = {"relu": nn.relu, "swish": nn.swish, "gelu": nn.gelu, "tanh": jnp.tanh}
TASK_KINDS = ("regression", "binary", "classification")
# Config keys each architecture reads (besides features, tower_hidden, activation); setting another is an error.
ARCH_KEYS = {
    "shared_bottom": ("bottom_hidden",),
    "mmoe": ("expert_hidden", "num_shared_experts"),
    "cgc": ("expert_hidden", "num_shared_experts", "num_task_experts"),
    "ple": ("expert_hidden", "num_shared_experts", "num_task_experts", "num_levels"),
    "adatt": ("expert_hidden", "num_shared_experts", "num_task_experts", "num_levels"),
    "home": ("expert_hidden", "num_shared_experts", "num_task_experts", "num_group_experts", "task_groups",
             "feature_gate_rank", "self_gate"),
}
COMMON_KEYS = ("arch", "features", "tower_hidden", "activation")


def _expert_init():
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1,
                                         batch_axis=(0,))


def _symmetric_uniform(scale: float):
  """Initializer: uniform in [-scale, scale]."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class ExpertBank(nn.Module):
  """`num` expert MLPs at once: x [B, D] (shared input) or [B, num, D] (one input each) -> [B, num, H].

  Each layer is Dense then the activation; with `norm`, Dense -> BatchNorm (over the batch) -> activation.
  """
  num: int
  hidden: tuple[int, ...]
  activation: str = "relu"
  norm: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    act = ACTIVATIONS[self.activation]
    if x.ndim == 3 and x.shape[1] != self.num:
      raise ValueError(f"ExpertBank: {x.shape[1]} expert inputs for {self.num} experts")
    h = x
    for i, width in enumerate(self.hidden):
      w = self.param(f"w{i}", partitioning.logical(_expert_init(), ("expert", "embed", "mlp")),
                     (self.num, h.shape[-1], width), jnp.float32)
      b = self.param(f"b{i}", partitioning.logical(nn.initializers.zeros, ("expert", "mlp")), (self.num, width),
                     jnp.float32)
      h = (jnp.einsum("bd,edh->beh", h, w) if h.ndim == 2 else jnp.einsum("bed,edh->beh", h, w)) + b
      if self.norm:
        h = nn.BatchNorm(use_running_average=not train, axis=(-2, -1), name=f"norm{i}")(h)
      h = act(h)
    return h


class MLP(nn.Module):
  """Dense layers with the activation between them; the last layer is linear. x [B, D] -> [B, sizes[-1]]."""
  sizes: tuple[int, ...]
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for i, s in enumerate(self.sizes):
      x = nn.Dense(s, name=f"dense{i}")(x)
      if i < len(self.sizes) - 1:
        x = ACTIVATIONS[self.activation](x)
    return x


def _mix(gate: jnp.ndarray, experts: jnp.ndarray) -> jnp.ndarray:
  """gate [B, n] (weights), experts [B, n, H] -> [B, H]."""
  return jnp.einsum("be,beh->bh", gate, experts)


class TowerModel(nn.Module):
  """Tabular multi-task model: input layer, shared-bottom / MMoE / CGC / PLE / AdaTT / HoME, towers.

  Attributes (see the module docstring for what each architecture reads):
    task_names, num_outputs: tasks in order and each tower's output width.
    features: the named input features.
    arch: one of ARCHS.
    expert_hidden / bottom_hidden / tower_hidden: MLP widths.
    num_shared_experts, num_task_experts, num_group_experts, num_levels: expert counts and depth.
    task_groups: HoME group id per task (empty: one group per task).
    feature_gate_rank: HoME feature-gate rank (0: no feature gates).
    self_gate: HoME self gates.
    activation: of experts (except HoME's Swish), the shared bottom and towers.
  """
  task_names: tuple[str, ...]
  num_outputs: tuple[int, ...]
  features: tuple[FeatureSpec, ...]
  arch: str = "mmoe"
  expert_hidden: tuple[int, ...] = (16,)
  bottom_hidden: tuple[int, ...] = (113,)
  tower_hidden: tuple[int, ...] = (8,)
  num_shared_experts: int = 8
  num_task_experts: int = 1
  num_group_experts: int = 1
  num_levels: int = 2
  task_groups: tuple[int, ...] = ()
  feature_gate_rank: int = 0
  self_gate: bool = True
  activation: str = "relu"

  def _validate(self):
    t = len(self.task_names)
    if not t or len(set(self.task_names)) != t or len(self.num_outputs) != t:
      raise ValueError(f"TowerModel: task_names must be non-empty and distinct with one num_outputs each, got "
                       f"{self.task_names} / {self.num_outputs}")
    if self.arch not in ARCHS:
      raise ValueError(f"TowerModel: unknown arch {self.arch!r}; expected one of {ARCHS}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"TowerModel: unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
    for key in ("expert_hidden", "bottom_hidden", "tower_hidden"):
      sizes = getattr(self, key)
      if any(int(s) < 1 for s in sizes) or (key != "tower_hidden" and not sizes):
        raise ValueError(f"TowerModel: {key} must be positive widths, got {sizes}")
    counts = {"num_shared_experts": self.num_shared_experts, "num_task_experts": self.num_task_experts,
              "num_group_experts": self.num_group_experts, "num_levels": self.num_levels}
    least = {"mmoe": {"num_shared_experts": 1}, "cgc": {"num_task_experts": 1},
             "ple": {"num_task_experts": 1, "num_levels": 1}, "adatt": {"num_task_experts": 1, "num_levels": 1},
             "home": {"num_shared_experts": 1, "num_task_experts": 1, "num_group_experts": 1}}.get(self.arch, {})
    for key, value in counts.items():
      if value < least.get(key, 0):
        raise ValueError(f"TowerModel: arch {self.arch!r} needs {key} >= {least.get(key, 0)}, got {value}")
    if self.arch == "home":
      if self.task_groups and (len(self.task_groups) != t or min(self.task_groups) < 0):
        raise ValueError(f"TowerModel: task_groups needs one group id >= 0 per task ({t}), got {self.task_groups}")
      if self.feature_gate_rank < 0:
        raise ValueError(f"TowerModel: feature_gate_rank must be >= 0, got {self.feature_gate_rank}")

  def _gate(self, name: str, x: jnp.ndarray, n: int) -> jnp.ndarray:
    return jax.nn.softmax(nn.Dense(n, name=name)(x).astype(jnp.float32), axis=-1)

  def _bank(self, name: str, n: int, x: jnp.ndarray, train: bool, norm: bool = False) -> jnp.ndarray:
    act = "swish" if norm else self.activation
    return ExpertBank(n, tuple(int(h) for h in self.expert_hidden), act, norm, name=name)(x, train=train)

  def _sow_gate(self, task: str, gate: jnp.ndarray, own: slice | None) -> None:
    entropy = -jnp.sum(gate * jnp.log(jnp.maximum(gate, 1e-12)), axis=-1)
    self.sow("metrics", f"towers/{task}/gate_entropy", jnp.mean(entropy))
    if own is not None:
      self.sow("metrics", f"towers/{task}/own_weight", jnp.mean(jnp.sum(gate[:, own], axis=-1)))

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    """x [B, F] -> task name -> [B, num_outputs]."""
    self._validate()
    h = TabularInput(self.features, name="input")(x)
    build = {"shared_bottom": self._shared_bottom, "adatt": self._adatt, "home": self._home}.get(self.arch, self._ple)
    reps = build(h, train)
    return {name: MLP(tuple(int(s) for s in self.tower_hidden) + (int(k),), self.activation,
                      name=f"tower_{name}")(r)
            for name, r, k in zip(self.task_names, reps, self.num_outputs)}

  def _shared_bottom(self, h, train):
    del train
    sizes = tuple(int(s) for s in self.bottom_hidden)
    z = ACTIVATIONS[self.activation](MLP(sizes, self.activation, name="bottom")(h))
    return [z] * len(self.task_names)

  def _ple(self, h, train):
    """MMoE (no task experts, one level), CGC (one level) and PLE (num_levels)."""
    t, s = len(self.task_names), self.num_shared_experts
    k = 0 if self.arch == "mmoe" else self.num_task_experts
    levels = 1 if self.arch in ("mmoe", "cgc") else self.num_levels
    streams, shared_stream = [h] * t, h
    for lvl in range(levels):
      final = lvl == levels - 1
      shared = self._bank(f"shared_experts{lvl}", s, shared_stream, train) if s else None
      own = None
      if k:
        inputs = jnp.repeat(jnp.stack(streams, axis=1), k, axis=1)  # [B, T*K, D]: each expert its task's stream
        own = self._bank(f"task_experts{lvl}", t * k, inputs, train).reshape(h.shape[0], t, k, -1)
      new = []
      for i, name in enumerate(self.task_names):
        cands = jnp.concatenate([a for a in (None if own is None else own[:, i], shared) if a is not None], axis=1)
        g = self._gate(f"gate{lvl}_{name}", streams[i], cands.shape[1])
        new.append(_mix(g, cands))
        if final:
          self._sow_gate(name, g, slice(0, k) if k else None)
      if s and not final:
        everything = jnp.concatenate([a for a in (None if own is None else own.reshape(h.shape[0], t * k, -1),
                                                  shared) if a is not None], axis=1)
        shared_stream = _mix(self._gate(f"gate{lvl}_shared", shared_stream, everything.shape[1]), everything)
      streams = new
    return streams

  def _adatt(self, h, train):
    t, s, k = len(self.task_names), self.num_shared_experts, self.num_task_experts
    b = h.shape[0]
    streams, shared_stream = [h] * t, h
    for lvl in range(self.num_levels):
      final = lvl == self.num_levels - 1
      inputs = jnp.repeat(jnp.stack(streams, axis=1), k, axis=1)
      own = self._bank(f"task_experts{lvl}", t * k, inputs, train).reshape(b, t, k, -1)
      shared = self._bank(f"shared_experts{lvl}", s, shared_stream, train) if s else None
      everything = own.reshape(b, t * k, -1) if shared is None else jnp.concatenate(
          [own.reshape(b, t * k, -1), shared], axis=1)
      new = []
      for i, name in enumerate(self.task_names):
        g = self._gate(f"gate{lvl}_{name}", streams[i], everything.shape[1])
        new.append(_mix(g, everything) + self._native(f"native{lvl}_{name}", own[:, i]))
        if final:
          self._sow_gate(name, g, slice(i * k, (i + 1) * k))
      if s and not final:
        g = self._gate(f"gate{lvl}_shared", shared_stream, everything.shape[1])
        shared_stream = _mix(g, everything) + self._native(f"native{lvl}_shared", shared)
      streams = new
    return streams

  def _native(self, name: str, experts: jnp.ndarray) -> jnp.ndarray:
    """AdaTT's linear fusion of a unit's own experts [B, K, H] -> [B, H] (the plain sum-free residual if K=1).

    v starts uniform in [-1/sqrt(K), 1/sqrt(K)], as in the authors' code (facebookresearch/AdaTT): starting
    at v = 1 made the residual the sum of K experts, which swamped the gated fusion (on MMoE's synthetic
    data AdaTT-sp with v = 1 trailed the shared bottom at every correlation, docs/towers.md).
    """
    if experts.shape[1] == 1:
      return experts[:, 0]
    k = experts.shape[1]
    v = self.param(name, _symmetric_uniform(k ** -0.5), (k,), jnp.float32)
    return jnp.einsum("k,bkh->bh", v, experts)

  def _home(self, h, train):
    t = len(self.task_names)
    groups = tuple(self.task_groups) or tuple(range(t))
    group_ids = sorted(set(groups))
    s, m, k, b = self.num_shared_experts, self.num_group_experts, self.num_task_experts, h.shape[0]
    ng = len(group_ids)
    # Level 1: global + per-group experts on the (feature-gated) input.
    n1 = s + ng * m
    x1 = h
    if self.feature_gate_rank:
      r, d = self.feature_gate_rank, h.shape[-1]
      a = self.param("feature_gate_a", _expert_init(), (n1, d, r), jnp.float32)
      bb = self.param("feature_gate_b", nn.initializers.zeros, (n1, r, d), jnp.float32)
      fg = 2.0 * jax.nn.sigmoid(jnp.einsum("ber,erd->bed", jnp.einsum("bd,edr->ber", h, a), bb))
      x1 = h[:, None, :] * fg  # [B, n1, D]; zero-initialised B: every gate starts at 1
    e1 = self._bank("experts1", n1, x1, train, norm=True)  # [B, n1, H]: global first, then group by group
    glob1 = e1[:, :s]
    group1 = {g: e1[:, s + j * m:s + (j + 1) * m] for j, g in enumerate(group_ids)}
    group_stream = {}
    for g in group_ids:
      cands = jnp.concatenate([group1[g], glob1], axis=1)
      group_stream[g] = _mix(self._gate(f"gate1_group{g}", h, cands.shape[1]), cands) + self._selfgate(
          f"self_gate1_group{g}", h, group1[g])
    global_stream = _mix(self._gate("gate1_global", h, n1), e1)
    # Level 2: global experts on the global stream, group and task experts on their group's stream.
    glob2 = self._bank("global_experts2", s, global_stream, train, norm=True)
    group_in = jnp.repeat(jnp.stack([group_stream[g] for g in group_ids], axis=1), m, axis=1)
    group2 = self._bank("group_experts2", ng * m, group_in, train, norm=True).reshape(b, ng, m, -1)
    task_in = jnp.repeat(jnp.stack([group_stream[g] for g in groups], axis=1), k, axis=1)
    task2 = self._bank("task_experts2", t * k, task_in, train, norm=True).reshape(b, t, k, -1)
    out = []
    for i, name in enumerate(self.task_names):
      x_t = group_stream[groups[i]]
      cands = jnp.concatenate([task2[:, i], group2[:, group_ids.index(groups[i])], glob2], axis=1)
      g = self._gate(f"gate2_{name}", x_t, cands.shape[1])
      out.append(_mix(g, cands) + self._selfgate(f"self_gate2_{name}", x_t, task2[:, i]))
      self._sow_gate(name, g, slice(0, k))
    return out

  def _selfgate(self, name: str, x: jnp.ndarray, experts: jnp.ndarray) -> jnp.ndarray | float:
    if not self.self_gate:
      return 0.0
    s = jax.nn.sigmoid(nn.Dense(experts.shape[1], name=name)(x).astype(jnp.float32))
    return _mix(s, experts)


@MODELS.register("towers")
def build_towers(model_cfg: ml_collections.ConfigDict | dict, tasks: Sequence[TaskSpec],
                 input_shape: tuple[int, ...], mesh=None) -> TowerModel:
  """`config.model` (name='towers') -> TowerModel. Keys: arch, features (spec strings), tower_hidden,
  activation and the keys the arch reads (ARCH_KEYS); a key the arch does not read is an error. `mesh` is
  unused (the towers are small; they shard over the batch like any model)."""
  del mesh
  cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
  cfg = {k: v for k, v in cfg.items() if k != "name" and not (k in ("encoder", "head") and not v)}
  extra = sorted(k for k in ("encoder", "head") if k in cfg)
  if extra:
    raise ValueError(f"towers models have no encoder/head sub-configs; got {extra}")
  arch = cfg.get("arch", "mmoe")
  if arch not in ARCHS:
    raise ValueError(f"unknown towers arch {arch!r}; expected one of {ARCHS}")
  allowed = set(COMMON_KEYS) | set(ARCH_KEYS[arch])
  unused = sorted(set(cfg) - allowed)
  if unused:
    raise ValueError(f"towers arch {arch!r} does not read config keys {unused}; it reads {sorted(allowed)}")
  for t in tasks:
    if t.kind not in TASK_KINDS:
      raise ValueError(f"task {t.name!r}: towers predict {TASK_KINDS} tasks, not {t.kind!r}")
  features = parse_features(tuple(cfg.pop("features", ()) or ()) or _default_features(input_shape), input_shape)
  kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()}
  return TowerModel(task_names=tuple(t.name for t in tasks), num_outputs=tuple(t.num_outputs for t in tasks),
                    features=features, **kwargs)


def _default_features(input_shape: tuple[int, ...]) -> tuple[str, ...]:
  if len(input_shape) != 1:
    raise ValueError(f"towers models need tabular inputs [B, F], got an example shape {input_shape}")
  return (f"x:dense:{input_shape[0]}",)
