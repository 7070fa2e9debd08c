"""Fashion scenes: dense multi-task prediction on 64x64 scenes of 2-4 Fashion-MNIST items
(mtl/data/builders/fashion_scenes.py): 'semseg' (11 classes, mIoU), 'depth' (per-pixel depth, abs error, lower is
better), 'edges' (item boundaries, F1). Shared conv encoder (stride 8 feature map) + one dense head per task
(conv, bilinear upsampling to 64x64, conv).

  python -m experiments.train --config configs/fashion_scenes.py --workdir workdirs/fs_w1
  python -m experiments.train --config configs/fashion_scenes.py:width=0.5 --workdir workdirs/fs_w0.5
Defaults: 3000 steps, batch 64, Adam lr 3e-3 (cosine, 100 warmup steps); args: tasks, steps=, batch=, lr=,
width=, res= (64, or 32 / 16: the 'fashion_scenes<res>' datasets, mtl/data/builders/fashion_scenes_lowres.py),
seed= (unknown args raise).

Usage: --config configs/fashion_scenes.py                  (all three tasks, full width)
       --config configs/fashion_scenes.py:semseg           (single task; 'semseg+depth' for two)
       --config configs/fashion_scenes.py:width=0.5        (an independently trained fixed-width model: every
             channel count is that of the slimmable model at width 0.5, the baseline for delta-m of
             configs/control_fashion_scenes.py)
       --config configs/fashion_scenes.py:steps=300,batch=32   (short CPU runs)
"""
from configs import common
from mtl.nn import slimmable

STAGE_CHANNELS = (16, 32, 64)
HEAD_HIDDEN = 32
GROUP = 8


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=(), steps=3000, batch=64, lr=3e-3, width=1.0, res=64, seed=0)
  if args.res not in (64, 32, 16):
    raise ValueError(f"fashion_scenes: res must be 64, 32 or 16, got {args.res}")
  c.dataset.name = "fashion_scenes" if args.res == 64 else f"fashion_scenes{args.res}"
  c.seed = args.seed
  c.dataset.tasks = args.tasks
  c.num_steps = args.steps
  c.batch_size = args.batch
  c.eval_batch_size = 250
  c.log_every = 50
  c.checkpoint.every_steps = min(1000, c.num_steps)
  c.optimizer.learning_rate = args.lr
  c.optimizer.warmup_steps = min(100, c.num_steps // 10)
  width = args.width
  if not 0.0 < width <= 1.0:
    raise ValueError(f"fashion_scenes: width must be in (0, 1], got {width}")
  c.model.encoder.name = "conv"
  c.model.encoder.stage_channels = tuple(slimmable.scale_channels(ch, width, GROUP) for ch in STAGE_CHANNELS)
  c.model.head.hidden_dim = slimmable.scale_channels(HEAD_HIDDEN, width, GROUP)
  return c
