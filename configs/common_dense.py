"""Shared pieces of the NYUDv2 / PASCAL-Context configs (configs/nyud_*.py, configs/pascal_*.py).

Protocol (InvPT, Ye & Xu ECCV 2022, configs/{nyud,pascal}/*_vitLp16.yml and utils/config.py of
github.com/prismformore/Multi-Task-Transformer, also used by TaskPrompter / TaskExpert): crops of 448 x 576
(NYUD) / 512 x 512 (PASCAL), random scale [0.5, 2] + crop + flip, 40,000 iterations, batch 2, Adam lr 2e-5,
weight decay 1e-6, poly schedule, fixed task loss weights (NYUD: semseg 1, depth 1, normals 10, edge 50; PASCAL:
semseg 1, human_parts 2, saliency 5, normals 10, edge 50); edge loss positive weight 0.95 (mtl/tasks/boundary.py).

Common args (comma separated, 'key=value'): tasks=a+b (subset; weights follow), steps=, batch=, lr=, size=HxW
(input resolution; the dataset is read as 'nyud-HxW'), pretrained=FILE, smoke=1 (a tiny model at 32 x 48 for
2-core CPUs and tests: 4 steps, batch 2; see docs/benchmarks.md).
"""
from __future__ import annotations

import ml_collections

from configs import common

SMOKE_SIZE = (32, 48)
# Typed args (configs/common.parse_arg); 0 / '' mean "the protocol's value".
DEFAULTS = {"tasks": (), "steps": 0, "batch": 2, "lr": 0.0, "size": "", "pretrained": "", "smoke": False}


def parse(arg: str | None, name: str, **extra) -> "ml_collections.ConfigDict":
  """The common args plus `extra` defaults; unknown keys and bad values raise naming them."""
  del name  # parse_arg's errors name the arg.
  return common.parse_arg(arg, **DEFAULTS, **extra)


def base(dataset: str, nominal_hw: tuple[int, int], weights: dict[str, float], args, lr: float = 2e-5
         ) -> ml_collections.ConfigDict:
  """Dataset, tasks with their InvPT loss weights, the InvPT optimisation; the model is set by the caller."""
  c = common.base_config()
  smoke = bool(args.smoke)
  hw = SMOKE_SIZE if smoke else nominal_hw
  if args.size:
    try:
      hw = tuple(int(v) for v in args.size.lower().split("x"))
    except ValueError:
      raise ValueError(f"size must be HxW, got {args.size!r}") from None
    if len(hw) != 2 or min(hw) < 1:
      raise ValueError(f"size must be HxW with positive sizes, got {args.size!r}")
  c.dataset.name = dataset if tuple(hw) == tuple(nominal_hw) else f"{dataset}-{hw[0]}x{hw[1]}"
  tasks = tuple(args.tasks) or tuple(weights)
  unknown = [t for t in tasks if t not in weights]
  if unknown:
    raise ValueError(f"{dataset}: unknown task(s) {unknown}; tasks: {list(weights)}")
  c.dataset.tasks = tasks
  c.dataset.eval_split = "val"
  c.dataset.test_split = "val"
  c.mtl.method = "static"
  c.mtl.kwargs = ml_collections.ConfigDict({"weights": tuple(weights[t] for t in tasks)})
  c.num_steps = args.steps or (4 if smoke else 40000)
  c.batch_size = args.batch
  c.eval_batch_size = 4 if smoke else 6  # InvPT valBatch 6.
  c.log_every = 1 if smoke else 100
  c.checkpoint.every_steps = min(5000, c.num_steps)
  c.optimizer.name = "adamw"  # InvPT: torch Adam with L2 1e-6; decoupled here (either is negligible at 1e-6).
  c.optimizer.learning_rate = args.lr or lr
  c.optimizer.weight_decay = 1e-6
  c.optimizer.schedule = "poly"
  c.optimizer.warmup_steps = 0
  c.model.head.hidden_dim = 16 if smoke else 64
  c.model.pretrained = ml_collections.ConfigDict({"path": args.pretrained, "format": ""})
  return c


def set_pretrained_format(c: ml_collections.ConfigDict, fmt: str) -> None:
  """Names the file format only when a file is given (a format without a file is a config error)."""
  if c.model.pretrained.path:
    c.model.pretrained.format = fmt


def vit_large(c, smoke: bool):
  """The papers' encoder on `c`: ViT-L/16 (24 blocks, dim 1024, 16 heads; a tiny ViT with `smoke`) whose token
  map feeds the dense heads, loaded from a big_vision .npz."""
  c.model.encoder.name = "vit"
  c.model.encoder.patch_size = 8 if smoke else 16
  c.model.encoder.dim = 32 if smoke else 1024
  c.model.encoder.depth = 1 if smoke else 24
  c.model.encoder.num_heads = 2 if smoke else 16
  c.model.encoder.spatial_output = True
  set_pretrained_format(c, "big_vision_vit")
  return c
