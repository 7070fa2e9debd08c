"""Yeast (14 binary tasks on 103 features) with a mixture-of-experts or TaskExpert backbone
(mtl/models/taskexpert.py): a linear stem maps each sample to one token, then `depth` pre-LN blocks.

Usage: --config configs/moe_yeast.py                      (MoE MLPs in every block, top-2 of 8, shared router)
       --config configs/moe_yeast.py:router=task          (a router per task: the backbone runs once per task)
       --config configs/moe_yeast.py:moe_every=0          (the same backbone with dense MLPs)
       --config configs/moe_yeast.py:variant=taskexpert   (TaskExpert gates + feature memory; moe_every=0 unless given)
       --config configs/moe_yeast.py:impl=expert_parallel,expert_devices=4   (experts sharded over 4 devices)
       --config configs/moe_yeast.py:heads=4    (Multi-Head MoE, 4 sub-tokens per token, at the MoE MLP's MACs)
Same data, steps, batch and optimizer as configs/yeast.py (the dense shared MLP encoder, the baseline).
"""
from configs import common
from configs import yeast


def get_config(arg: str | None = None):
  args = common.parse_arg(arg)
  c = yeast.get_config(args.get("tasks"))
  c.model = common.base_config().model
  c.model.name = "taskexpert"
  c.model.variant = args.get("variant", "moe")
  c.model.dim = int(args.get("dim", 128))
  c.model.depth = int(args.get("depth", 2))
  c.model.num_heads = 4
  c.model.mlp_ratio = 2.0
  c.model.moe_every = int(args.get("moe_every", 0 if c.model.variant == "taskexpert" else 1))
  c.model.num_experts = int(args.get("num_experts", 8))
  c.model.top_k = int(args.get("top_k", 2))
  c.model.capacity_factor = float(args.get("capacity_factor", 1.25))
  c.model.eval_capacity_factor = 2.0
  c.model.router = args.get("router", "topk")
  c.model.moe_impl = args.get("impl", "ragged")
  c.model.te_experts = int(args.get("te_experts", 8))
  c.model.te_hidden = int(args.get("te_hidden", 64))
  c.model.moe_groups = int(args.get("groups", 0))  # 0: one routing group per device of the token split
  if "heads" in args:  # MH-MoE: expert hidden shrunk so the layer costs the MoEMLP's MACs (mtl/nn/mh_moe.py)
    from mtl.nn.mh_moe import equal_macs_hidden
    c.model.moe_heads = int(args["heads"])
    c.model.moe_hidden = equal_macs_hidden(c.model.dim, int(c.model.dim * c.model.mlp_ratio), c.model.top_k)
  common.apply_expert_devices(c, args)
  return c
