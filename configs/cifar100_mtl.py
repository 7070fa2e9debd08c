"""CIFAR100-MTL: 20 tasks (one per CIFAR-100 superclass, a 5-way choice among its classes); every image is
labelled for its own superclass's task only (per-sample task masks). Conv encoder + classification heads.

The images come from the upstream CIFAR-100 files, which the user downloads once (no network at run time): the
binary archive (cifar-100-binary/{train,test}.bin) or the python-pickle one (cifar-100-python/{train,test,meta}),
found from one setting: $MTL_CIFAR100_DIR, or <data_dir>/downloads/manual/ holding either folder (data_dir from
--config.dataset.data_dir or $MTL_DATA_DIR; see mtl/data/sources.py).

Task split (the routing-networks CIFAR-MTL protocol of Rosenbaum et al. 2018, used by the controllable-MTL paper):
task t = superclass t (CIFAR-100 coarse label order, e.g. 0 aquatic_mammals ... 19 vehicles_2), a 5-way choice among
its 5 fine classes (label = rank of the fine id among them); each image belongs to exactly one task. Train = first
45,000 training images (about 2,250 per task), validation = last 5,000, test = the 10,000 test images (500 per
task). Difference: the protocol trains on all 50,000 (2,500 per task); here 10% is held out for validation.

  python -m experiments.train --config configs/cifar100_mtl.py --workdir workdirs/c100_w1
Defaults: 10000 steps, batch 128, Adam lr 2e-3 (cosine, 200 warmup steps), weight decay 5e-4; args: tasks,
steps=, batch=, lr=, width= (unknown args raise).

Usage: --config configs/cifar100_mtl.py                       (all 20 tasks, full width)
       --config configs/cifar100_mtl.py:fish+flowers          (a subset of tasks)
       --config configs/cifar100_mtl.py:width=0.5             (fixed-width baseline for control_cifar100_mtl)
       --config configs/cifar100_mtl.py:steps=200,batch=64    (short runs)
"""
from configs import common
from mtl.nn import slimmable

STAGE_CHANNELS = (32, 64, 128)
HEAD_HIDDEN = 64
GROUP = 8


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=(), steps=10000, batch=128, lr=2e-3, width=1.0)
  c.dataset.name = "cifar100_mtl"
  c.dataset.tasks = args.tasks
  c.num_steps = args.steps
  c.batch_size = args.batch
  c.eval_batch_size = 500
  c.log_every = 100
  c.checkpoint.every_steps = min(2000, c.num_steps)
  c.optimizer.learning_rate = args.lr
  c.optimizer.warmup_steps = min(200, c.num_steps // 10)
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 5e-4
  width = args.width
  if not 0.0 < width <= 1.0:
    raise ValueError(f"cifar100_mtl: width must be in (0, 1], got {width}")
  c.model.encoder.name = "conv"
  c.model.encoder.stage_channels = tuple(slimmable.scale_channels(ch, width, GROUP) for ch in STAGE_CHANNELS)
  c.model.head.hidden_dim = slimmable.scale_channels(HEAD_HIDDEN, width, GROUP)
  return c
