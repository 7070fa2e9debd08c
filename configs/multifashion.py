"""MultiFashion: two overlaid Fashion-MNIST items, tasks 'left' and 'right' (10 classes each).

Usage: --config configs/multifashion.py            (both tasks)
       --config configs/multifashion.py:left       (single-task baseline for delta-m)
       --config configs/multifashion.py:width=0.5,hidden=64,steps=1500   (an independently trained fixed-width
             model: every channel count that of the slimmable model of configs/control_multifashion.py at
             width 0.5, the baseline for its delta-m)
Args: tasks (bare word), width= (in (0, 1], default 1), hidden= (head hidden units at width 1, default 128),
steps= (default 2000), seed= (default 0); unknown args raise.
"""
from configs import common
from mtl.nn import slimmable

STAGE_CHANNELS = (16, 32, 64)
GROUP = 8


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=(), width=1.0, hidden=128, steps=2000, seed=0)
  if not 0.0 < args.width <= 1.0:
    raise ValueError(f"multifashion: width must be in (0, 1], got {args.width}")
  if args.hidden < 1 or args.steps < 1:
    raise ValueError(f"multifashion: hidden and steps must be >= 1, got {args.hidden}, {args.steps}")
  c.dataset.name = "multifashion"
  c.dataset.tasks = args.tasks
  c.seed = args.seed
  c.num_steps = args.steps
  c.batch_size = 128
  c.log_every = 50
  c.checkpoint.every_steps = min(500, c.num_steps)
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 50
  c.model.encoder.name = "conv"
  c.model.encoder.stage_channels = tuple(slimmable.scale_channels(ch, args.width, GROUP) for ch in STAGE_CHANNELS)
  c.model.head.hidden_dim = slimmable.scale_channels(args.hidden, args.width, GROUP)
  return c
