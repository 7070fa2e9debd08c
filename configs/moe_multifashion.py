"""MultiFashion with a mixture-of-experts ViT encoder (mtl/models/taskexpert.py, variant='moe').

Usage: --config configs/moe_multifashion.py                  (top-2 of 8 experts, one shared router)
       --config configs/moe_multifashion.py:router=task      (a router per task, M3ViT-style)
       --config configs/moe_multifashion.py:moe_every=0      (the same ViT with dense MLPs: the baseline)
       --config configs/moe_multifashion.py:left             (single task, for delta-m)
       --config configs/moe_multifashion.py:impl=expert_parallel,expert_devices=4
             (experts sharded over a mesh axis 'expert' of 4 devices with all-to-all dispatch; the batch is split
              over data x expert; expert weights live on their owners, rule preset 'expert')
Same data, steps, batch and optimizer as configs/multifashion.py.
"""
from configs import common
from configs import multifashion


def get_config(arg: str | None = None):
  args = common.parse_arg(arg)
  c = multifashion.get_config(args.get("tasks"))
  c.model = common.base_config().model
  c.model.name = "taskexpert"
  c.model.variant = "moe"
  c.model.patch_size = 4
  c.model.dim = 64
  c.model.depth = 4
  c.model.num_heads = 4
  c.model.mlp_ratio = 2.0
  c.model.moe_every = int(args.get("moe_every", 2))
  c.model.num_experts = int(args.get("num_experts", 8))
  c.model.top_k = int(args.get("top_k", 2))
  c.model.capacity_factor = float(args.get("capacity_factor", 1.25))
  c.model.eval_capacity_factor = 2.0
  c.model.router = args.get("router", "topk")
  c.model.moe_impl = args.get("impl", "ragged")
  c.model.moe_groups = int(args.get("groups", 0))  # 0: one routing group per device of the token split
  common.apply_expert_devices(c, args)
  c.model.aux_loss_coef = 1e-2
  c.model.z_loss_coef = 1e-3
  return c
