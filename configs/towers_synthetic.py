"""MMoE's synthetic benchmark (Ma et al. 2018, section 4): two regression tasks at a chosen task correlation,
with a tabular task-expert model (mtl/models/towers.py) at the paper's sizes.

Usage: --config configs/towers_synthetic.py                          (MMoE at correlation 0.5)
       --config configs/towers_synthetic.py:arch=ple,correlation=0.9
arch in shared_bottom | mmoe | cgc | ple | adatt | home; correlation one of the registered
mtl.data.builders.mmoe_synthetic.CORRELATIONS.
Sizes (input d=100): MMoE has 8 single-layer experts of 16 units and towers of 8 (the paper's); the shared bottom
is one layer of 113 units (the paper's parameter-matched baseline); CGC / PLE / AdaTT / HoME keep 8 experts of 16
units on the input (PLE, AdaTT and HoME add a second, narrow level on the 16-dim streams).
"""
from configs import common
from mtl.data.builders import mmoe_synthetic

# arch -> model keys (besides arch, features, tower_hidden, activation).
SYNTHETIC_ARCHS = {
    "shared_bottom": dict(bottom_hidden=(113,)),
    "mmoe": dict(expert_hidden=(16,), num_shared_experts=8),
    "cgc": dict(expert_hidden=(16,), num_shared_experts=4, num_task_experts=2),
    "ple": dict(expert_hidden=(16,), num_shared_experts=4, num_task_experts=2, num_levels=2),
    "adatt": dict(expert_hidden=(16,), num_shared_experts=0, num_task_experts=4, num_levels=2),
    "home": dict(expert_hidden=(16,), num_shared_experts=4, num_group_experts=1, num_task_experts=1,
                 feature_gate_rank=2, self_gate=True),
}


def tower_model(arch: str, features: tuple[str, ...], tower_hidden: tuple[int, ...], archs: dict):
  """config.model for a towers model; `archs` maps arch -> its keys."""
  if arch not in archs:
    raise ValueError(f"unknown towers arch {arch!r}; expected one of {sorted(archs)}")
  m = common.base_config().model
  del m.encoder, m.head
  m.name = "towers"
  m.arch = arch
  m.features = tuple(features)
  m.tower_hidden = tuple(tower_hidden)
  m.activation = "relu"
  for k, v in archs[arch].items():
    m[k] = v
  return m


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, arch="mmoe", correlation=0.5, steps=3000)
  correlation = args.correlation
  c.dataset.name = mmoe_synthetic.dataset_name(correlation)
  if correlation not in mmoe_synthetic.CORRELATIONS:
    raise ValueError(f"correlation {correlation} has no registered dataset; registered: "
                     f"{mmoe_synthetic.CORRELATIONS} (add it to mmoe_synthetic.CORRELATIONS)")
  c.num_steps = args.steps
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.log_every = 250
  c.checkpoint.every_steps = 1000
  c.optimizer.learning_rate = 1e-3
  c.model = tower_model(args.arch, (f"x:dense:{mmoe_synthetic.DIM}",), (8,), SYNTHETIC_ARCHS)
  return c
