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
  c.optimizer.name = "adamw"  # decoupled weight decay; fields an optimizer ignores are errors
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "cosine"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 0.0

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
  c.sharding.rules = ()  # (regex on 'params/...' paths, 'fsdp' | 'tensor' | spec tuple), first match wins.
  return c


def parse_arg(arg: str | None) -> dict[str, str]:
  """'key=value,key2=value2' (or a bare word, returned under 'tasks') -> dict."""
  out = {}
  for part in (arg or "").split(","):
    if not part:
      continue
    if "=" in part:
      k, v = part.split("=", 1)
      out[k] = v
    else:
      out.setdefault("tasks", part)
  return out


# Sharding-rule presets for `config.sharding.rules`: (regex on 'params/...' / 'opt_state/...' paths, target);
# target 'fsdp' | 'tensor' | 'expert' shards the largest dimension divisible by that mesh axis, a tuple gives
# the PartitionSpec per dimension. The first matching rule wins; unmatched leaves are replicated.
SHARDING_RULES = {
    "data": (),
    "fsdp": ((r".*", "fsdp"),),
    "tensor": ((r".*/kernel", "tensor"),),
    # MoE expert weights [E, ...] split over 'expert' on their leading axis, the rest replicated.
    "expert": ((r".*/(w1|w2)", ("expert", None, None)), (r".*/b[12]", ("expert", None))),
    # MoE expert weights [E, ...] split over 'expert' on their leading axis, the rest fully sharded.
    "expert_fsdp": ((r".*/(w1|w2)", ("expert", None, None)), (r".*/b[12]", ("expert", None)), (r".*", "fsdp")),
}


def make_controllable(c: ml_collections.ConfigDict, widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
                      pool_size: int = 8, cikd_weight: float = 1.0) -> ml_collections.ConfigDict:
  """Turns a multitask config into its controllable version (Aich et al., ICCV 2023): slimmable encoder and
  heads at `widths`, trained with the sandwich rule (largest, smallest and one random configuration of a pool
  of `pool_size` per step) and CIKD on the encoder features weighted by `cikd_weight`."""
  c.control = ml_collections.ConfigDict()
  c.control.enabled = True
  c.control.widths = tuple(widths)
  c.control.num_random = 1
  c.control.pool_size = pool_size
  c.control.cikd_weight = cikd_weight
  c.control.cikd_normalize = False
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  return c


def apply_expert_devices(c: ml_collections.ConfigDict, args: dict) -> None:
  """arg 'expert_devices=N': mesh {'data': -1, 'expert': N} and expert weights sharded on their owners."""
  if "expert_devices" in args:
    c.mesh = {"data": -1, "expert": int(args["expert_devices"])}
    c.sharding.rules = sharding_rules("expert")


def sharding_rules(name: str) -> tuple:
  """A preset of `SHARDING_RULES`; unknown names raise."""
  if name not in SHARDING_RULES:
    raise ValueError(f"unknown sharding preset {name!r}; known: {sorted(SHARDING_RULES)}")
  return SHARDING_RULES[name]
