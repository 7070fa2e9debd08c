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


ARGS = dict(tasks=(), moe_every=2, num_experts=8, top_k=2, capacity_factor=1.25, router="topk", impl="ragged",
            groups=0, expert_devices=0)


def get_config(arg: str | None = None):
  return build(common.parse_arg(arg, **ARGS))


def build(args) -> "common.ml_collections.ConfigDict":
  """The config from typed args (ARGS; configs/taskexpert_multifashion.py adds its own)."""
  c = multifashion.get_config("+".join(args.tasks))
  c.model = common.base_config().model
  c.model.name = "taskexpert"
  c.model.variant = "moe"
  c.model.patch_size = 4
  c.model.dim = 64
  c.model.depth = 4
  c.model.num_heads = 4
  c.model.mlp_ratio = 2.0
  c.model.moe_every = args.moe_every
  c.model.num_experts = args.num_experts
  c.model.top_k = args.top_k
  c.model.capacity_factor = args.capacity_factor
  c.model.eval_capacity_factor = 2.0
  c.model.router = args.router
  c.model.moe_impl = args.impl
  c.model.moe_groups = args.groups  # 0: one routing group per device of the token split
  common.apply_expert_devices(c, args.expert_devices)
  c.model.aux_loss_coef = 1e-2
  c.model.z_loss_coef = 1e-3
  return c
