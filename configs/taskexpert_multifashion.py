"""MultiFashion with TaskExpert (mtl/models/taskexpert.py): per-layer expert decomposition, task gates and
a multi-task feature memory on a small ViT backbone (optionally with MoE MLPs: moe_every=2).

Usage: --config configs/taskexpert_multifashion.py
       --config configs/taskexpert_multifashion.py:moe_every=2,router=task
Same data, steps, batch and optimizer as configs/multifashion.py.
"""
from configs import common
from configs import moe_multifashion


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, **{**moe_multifashion.ARGS, "moe_every": 0, "te_experts": 8, "te_hidden": 32})
  c = moe_multifashion.build(args)
  c.model.variant = "taskexpert"
  c.model.te_experts = args.te_experts
  c.model.te_hidden = args.te_hidden
  return c
