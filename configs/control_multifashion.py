"""Controllable MultiFashion (Aich et al., ICCV 2023): slimmable conv encoder + heads, sandwich rule + CIKD.

  python -m experiments.train --config configs/control_multifashion.py --workdir workdirs/ctrl_mf
  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3
"""
from configs import common, multifashion


def get_config(arg: str | None = None):
  c = multifashion.get_config(arg)
  c.num_steps = 1500
  c.model.encoder.stage_channels = (16, 32, 64)
  c.model.head.hidden_dim = 64
  return common.make_controllable(c)
