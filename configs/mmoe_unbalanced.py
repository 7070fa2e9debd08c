"""An unbalanced task pair: MMoE's synthetic regression (Ma et al. 2018) with task y2's targets k times larger, so
its MSE loss is about k^2 times y1's (mtl/data/builders/mmoe_unbalanced.py). Shared MLP encoder + one head per
task (the multitask model, as configs/yeast.py), so every mtl.optim method, mgda_ub included, runs on it.

Usage: --config configs/mmoe_unbalanced.py                          (p = 0.5, y2 x 10: loss ratio ~ 100)
       --config configs/mmoe_unbalanced.py:correlation=0.5,y2_scale=10,steps=300
(correlation, y2_scale) must be one of mtl.data.builders.mmoe_unbalanced.VARIANTS (registered datasets).
"""
from configs import common
from mtl.data.builders import mmoe_unbalanced


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, correlation=0.5, y2_scale=10, steps=300)
  if (args.correlation, args.y2_scale) not in mmoe_unbalanced.VARIANTS:
    mmoe_unbalanced.check_scale(args.y2_scale)  # names a bad scale before the missing registration
    raise ValueError(f"(correlation, y2_scale) = ({args.correlation}, {args.y2_scale}) has no registered dataset; "
                     f"registered: {mmoe_unbalanced.VARIANTS} (add it to mmoe_unbalanced.VARIANTS)")
  if args.steps < 1:
    raise ValueError(f"steps must be >= 1, got {args.steps}")
  c.dataset.name = mmoe_unbalanced.dataset_name(args.correlation, args.y2_scale)
  c.num_steps = args.steps
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.log_every = 50
  c.checkpoint.every_steps = args.steps
  c.optimizer.learning_rate = 1e-3
  c.model.encoder.name = "mlp"
  c.model.encoder.hidden_dims = (128, 64)
  c.model.head.hidden_dim = 32
  return c
