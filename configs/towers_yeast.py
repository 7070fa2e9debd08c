"""Yeast (14 binary tasks, 103 features) with a tabular task-expert model (mtl/models/towers.py).

Usage: --config configs/towers_yeast.py:arch=ple     (arch in shared_bottom | mmoe | cgc | ple | adatt | home)
Same data, steps, batch and optimizer as configs/yeast.py. The shared bottom (256-128, towers of 64) is the
architecture of configs/yeast.py's MLP encoder + heads; expert models use experts of 128 units, towers of 64.
"""
from configs import common
from configs import towers_synthetic
from configs import yeast

YEAST_ARCHS = {
    "shared_bottom": dict(bottom_hidden=(256, 128)),
    "mmoe": dict(expert_hidden=(128,), num_shared_experts=8),
    "cgc": dict(expert_hidden=(128,), num_shared_experts=4, num_task_experts=1),
    "ple": dict(expert_hidden=(128,), num_shared_experts=4, num_task_experts=1, num_levels=2),
    "adatt": dict(expert_hidden=(128,), num_shared_experts=2, num_task_experts=1, num_levels=2),
    # HoME's hierarchy needs task groups; Yeast's classes have no known meta-categories, so the split into
    # classes 1-7 and 8-14 is arbitrary (it fixes the structure: 2 group streams instead of 14).
    "home": dict(expert_hidden=(128,), num_shared_experts=4, num_group_experts=2, num_task_experts=1,
                 task_groups=(0,) * 7 + (1,) * 7, feature_gate_rank=2, self_gate=True),
}


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, tasks=(), arch="mmoe")
  c = yeast.get_config("+".join(args.tasks))
  c.model = towers_synthetic.tower_model(args.arch, ("expression:dense:103",), (64,), YEAST_ARCHS)
  return c
