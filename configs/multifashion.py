"""MultiFashion: two overlaid Fashion-MNIST items, tasks 'left' and 'right' (10 classes each).

Usage: --config configs/multifashion.py            (both tasks)
       --config configs/multifashion.py:left       (single-task baseline for delta-m)
"""
from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=())
  c.dataset.name = "multifashion"
  c.dataset.tasks = args.tasks
  c.num_steps = 2000
  c.batch_size = 128
  c.log_every = 50
  c.checkpoint.every_steps = 500
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 50
  c.model.encoder.name = "conv"
  c.model.encoder.stage_channels = (16, 32, 64)
  c.model.head.hidden_dim = 128
  return c
