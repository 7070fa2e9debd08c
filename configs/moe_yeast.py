"""Yeast (14 binary tasks on 103 features) with a mixture-of-experts or TaskExpert backbone
(mtl/models/taskexpert.py): a linear stem maps each sample to one token, then `depth` pre-LN blocks.

Usage: --config configs/moe_yeast.py                      (MoE MLPs in every block, top-2 of 8, shared router)
       --config configs/moe_yeast.py:router=task          (a router per task: the backbone runs once per task)
       --config configs/moe_yeast.py:moe_every=0          (the same backbone with dense MLPs)
       --config configs/moe_yeast.py:variant=taskexpert   (TaskExpert gates + feature memory; moe_every=0 unless given)
       --config configs/moe_yeast.py:impl=expert_parallel,expert_devices=4   (experts sharded over 4 devices)
Same data, steps, batch and optimizer as configs/yeast.py (the dense shared MLP encoder, the baseline).
"""
from configs import common
from configs import yeast


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, tasks=(), variant="moe", dim=128, depth=2, moe_every=-1, num_experts=8, top_k=2,
                          capacity_factor=1.25, router="topk", impl="ragged", te_experts=8, te_hidden=64, groups=0,
                          expert_devices=0, heads=0)
  c = yeast.get_config("+".join(args.tasks))
  c.model = common.base_config().model
  c.model.name = "taskexpert"
  c.model.variant = args.variant
  c.model.dim = args.dim
  c.model.depth = args.depth
  c.model.num_heads = 4
  c.model.mlp_ratio = 2.0
  # moe_every=-1 (default): 0 for TaskExpert (its own experts), else an MoE MLP in every block.
  c.model.moe_every = args.moe_every if args.moe_every >= 0 else (0 if args.variant == "taskexpert" else 1)
  c.model.num_experts = args.num_experts
  c.model.top_k = args.top_k
  c.model.capacity_factor = args.capacity_factor
  c.model.eval_capacity_factor = 2.0
  c.model.router = args.router
  c.model.moe_impl = args.impl
  c.model.te_experts = args.te_experts
  c.model.te_hidden = args.te_hidden
  c.model.moe_groups = args.groups  # 0: one routing group per device of the token split
  if args.heads:  # MH-MoE: expert hidden shrunk so the layer costs the MoEMLP's MACs (mtl/nn/mh_moe.py)
    from mtl.nn.mh_moe import equal_macs_hidden
    c.model.moe_heads = args.heads
    c.model.moe_hidden = equal_macs_hidden(c.model.dim, int(c.model.dim * c.model.mlp_ratio), c.model.top_k)
  common.apply_expert_devices(c, args.expert_devices)
  return c
