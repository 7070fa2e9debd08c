"""Defaults shared by every experiment config; each family overrides what it needs."""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_steps = 1000
  c.batch_size = 256
  c.eval_batch_size = 1000
  c.log_every = 50
  c.eval_every = 0  # 0: evaluate on the test split at the end only.

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = ""
  c.dataset.tasks = ()  # empty: all tasks of the dataset.
  c.dataset.data_dir = ""  # empty: $MTL_DATA_DIR or ~/tensorflow_datasets.
  c.dataset.eval_split = "validation"
  c.dataset.test_split = "test"

  c.model = ml_collections.ConfigDict()
  c.model.name = "multitask"
  c.model.encoder = ml_collections.ConfigDict()
  c.model.head = ml_collections.ConfigDict()

  c.optimizer = ml_collections.ConfigDict()
  # Plain Adam: what every documented run used (its weight_decay field was silently ignored before fields that
  # have no effect became errors). Set name='adamw' and weight_decay for decoupled weight decay.
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "cosine"
  c.optimizer.grad_clip_norm = 0.0

  # The train-step variant (mtl.train.registry.TRAIN_STEPS): 'standard', 'sandwich' (controllable MTL, needs
  # config.control), 'nested_draft' (LM speculative drafts, needs config.draft.widths), 'teacher_distill'
  # (distillation from another run's checkpoint, needs config.teacher.workdir), or 'package.module:fn'.
  c.train_step = "standard"

  c.mtl = ml_collections.ConfigDict()
  c.mtl.method = "equal"
  c.mtl.kwargs = ml_collections.ConfigDict()

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.max_to_keep = 3
  c.checkpoint.restore_step = config_dict.placeholder(int)

  # Nested speculative drafts (DecoderLM only): widths < 1 trained beside the full model, distilled from it.
  c.draft = ml_collections.ConfigDict()
  c.draft.widths = ()
  c.draft.kd_weight = 1.0

  c.mesh = ml_collections.ConfigDict({"data": -1})
  c.sharding = ml_collections.ConfigDict()
  c.sharding.logical_rules = ()  # (logical axis name, mesh axis or None), see SHARDING_PRESETS.
  c.sharding.rules = ()  # fallback: (regex on 'params/...' paths, 'fsdp' | 'tensor' | spec tuple), first match wins.
  return c


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Typed config args (big_vision style): 'key=value,key2=value2' -> ConfigDict of `defaults` overridden.

  Each value is converted to the type of its default: int, float, bool ('true'/'false'/'1'/'0'), str, or a
  tuple written with '+' ('semseg+depth', '0.25+0.5'; elements typed like the default's first element, else
  str). A bare word (no '=') sets 'tasks'. Unknown keys and unconvertible values raise, naming them.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for part in (arg or "").split(","):
    if not part:
      continue
    key, value = part.split("=", 1) if "=" in part else ("tasks", part)
    if key not in defaults:
      raise ValueError(f"unknown config arg {key!r} in {arg!r}; known: {', '.join(sorted(defaults)) or 'none'}")
    out[key] = _convert(key, value, defaults[key])
  return out


def _convert(key: str, value: str, default):
  try:
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(value)
      return value.lower() in ("true", "1")
    if isinstance(default, tuple):
      element = type(default[0]) if default else str
      return tuple(element(v) for v in value.split("+") if v)
    if isinstance(default, (int, float, str)):
      return type(default)(value)
    return value
  except ValueError:
    raise ValueError(f"config arg {key}={value!r}: expected {type(default).__name__} like its default "
                     f"{default!r}") from None


# Sharding presets, each (logical rules, path-regex fallback). Logical rules map the logical axis names that layers
# give their parameters (mtl/nn/partitioning.py: embed, mlp, heads, kv, vocab, expert, norm) to mesh axes; a mesh
# axis is used once per parameter (the first named dimension that divides takes it). Parameters without names (or
# whose names no rule shards) fall back to the regexes on 'params/...' / 'opt_state/...' paths: target
# 'fsdp' | 'tensor' | 'expert' shards the largest dimension divisible by that mesh axis, a tuple gives the
# PartitionSpec per dimension; the first matching regex wins; unmatched leaves are replicated.
_FSDP = (("embed", "fsdp"), ("mlp", "fsdp"), ("heads", "fsdp"), ("vocab", "fsdp"), ("expert", "fsdp"))
_EXPERT_REGEX = ((r".*/(w1|w2)", ("expert", None, None)), (r".*/b[12]", ("expert", None)))
SHARDING_PRESETS = {
    "data": ((), ()),
    "fsdp": (_FSDP, ((r".*", "fsdp"),)),
    "tensor": ((("mlp", "tensor"), ("heads", "tensor"), ("vocab", "tensor")), ((r".*/kernel", "tensor"),)),
    # MoE expert weights [E, ...] split over 'expert' on their leading axis, the rest replicated.
    "expert": ((("expert", "expert"),), _EXPERT_REGEX),
    # MoE expert weights [E, ...] split over 'expert' on their leading axis, the rest fully sharded.
    "expert_fsdp": ((("expert", "expert"),) + _FSDP, _EXPERT_REGEX + ((r".*", "fsdp"),)),
}


def _preset(name: str) -> tuple[tuple, tuple]:
  if name not in SHARDING_PRESETS:
    raise ValueError(f"unknown sharding preset {name!r}; known: {sorted(SHARDING_PRESETS)}")
  return SHARDING_PRESETS[name]


def sharding_rules(name: str) -> tuple:
  """The path-regex rules of preset `name` (config.sharding.rules); unknown names raise."""
  return _preset(name)[1]


def logical_sharding_rules(name: str) -> tuple:
  """The logical-axis rules of preset `name` (config.sharding.logical_rules); unknown names raise."""
  return _preset(name)[0]


def apply_sharding_preset(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Sets config.sharding.{logical_rules, rules} to preset `name`."""
  c.sharding.logical_rules, c.sharding.rules = _preset(name)
  return c


def make_controllable(c: ml_collections.ConfigDict, widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
                      cikd_weight: float = 1.0, output_distill_weight: float = 1.0, num_random: int = 1,
                      student_weight: float = 1.0, encoder_counts: tuple[int, ...] | None = None,
                      head_counts: tuple[int, ...] | None = None,
                      uniform_students: tuple[float, ...] = (), sliced_students: bool = False,
                      uniform_per_step: int = 0) -> ml_collections.ConfigDict:
  """Turns a multitask config into its controllable version (Aich et al., ICCV 2023): slimmable encoder and
  heads at `widths`, trained with the sandwich rule (largest, smallest and `num_random` students per step that
  cover every (encoder width, head width) pair; mtl/control/sandwich_step.py), CIKD on the encoder features
  weighted by `cikd_weight` and distillation of the largest configuration's outputs weighted by
  `output_distill_weight` (0 switches either off); the students' task losses weighted by `student_weight`;
  `encoder_counts` (one int >= 1 per width, ascending; None = all 1): how often each encoder width is a student
  per covering block (mtl/control/coverage.py); `head_counts` (likewise): how often each head width is a
  student's, for every task; `uniform_students`: middle widths whose uniform configuration is trained too,
  `uniform_per_step` of them per step, round robin (0 = all); `sliced_students`: drawn students share one head
  width and are sliced instead of masked."""
  c.train_step = "sandwich"
  c.control = ml_collections.ConfigDict()
  c.control.enabled = True
  c.control.widths = tuple(widths)
  c.control.num_random = num_random
  c.control.cikd_weight = cikd_weight
  c.control.cikd_normalize = False
  c.control.output_distill_weight = output_distill_weight
  c.control.student_weight = student_weight
  c.control.encoder_counts = tuple(encoder_counts) if encoder_counts else (1,) * len(widths)
  c.control.head_counts = tuple(head_counts) if head_counts else (1,) * len(widths)
  c.control.uniform_students = tuple(float(w) for w in uniform_students)
  c.control.uniform_per_step = int(uniform_per_step)
  c.control.sliced_students = bool(sliced_students)
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  return c


def widths_arg(key: str, value: str) -> tuple[float, ...]:
  """Config arg of widths joined by '+' ('0.5+0.75'; '' = none) -> floats; anything else raises, naming `key`."""
  try:
    return tuple(float(v) for v in value.split("+") if v)
  except ValueError:
    raise ValueError(f"config arg {key}={value!r}: expected widths joined by '+', e.g. 0.5+0.75") from None


def split_control_args(arg: str | None, name: str, fixed: str, **own) -> tuple[ml_collections.ConfigDict, str]:
  """For the controllable config `name` built on the fixed-width config `fixed`: ('width=' in `arg` raises, the
  controllable model trains every width) -> (its own args typed like `own`'s defaults, the rest of `arg` for
  `fixed`, '' if none)."""
  if "width=" in (arg or ""):
    raise ValueError(f"{name} trains every width; 'width=' is for configs/{fixed}.py")
  parts = [p for p in (arg or "").split(",") if p]
  mine = parse_arg(",".join(p for p in parts if p.split("=")[0] in own), **own)
  return mine, ",".join(p for p in parts if p.split("=")[0] not in own)


def apply_expert_devices(c: ml_collections.ConfigDict, expert_devices: int) -> None:
  """arg 'expert_devices=N' (N > 0): mesh {'data': -1, 'expert': N} and expert weights sharded on their owners."""
  if expert_devices < 0:
    raise ValueError(f"expert_devices must be >= 0, got {expert_devices}")
  if expert_devices:
    c.mesh = {"data": -1, "expert": expert_devices}
    apply_sharding_preset(c, "expert")
