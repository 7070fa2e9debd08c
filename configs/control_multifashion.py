"""Controllable MultiFashion (Aich et al., ICCV 2023): slimmable conv encoder + heads, sandwich rule + CIKD.

  python -m experiments.train --config configs/control_multifashion.py --workdir workdirs/ctrl_mf
  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3
"""
import ml_collections

from configs import multifashion


def get_config(arg: str | None = None):
  c = multifashion.get_config(arg)
  c.num_steps = 1500
  c.model.encoder.stage_channels = (16, 32, 64)
  c.model.head.hidden_dim = 64
  c.control = ml_collections.ConfigDict()
  c.control.enabled = True
  c.control.widths = (0.25, 0.5, 0.75, 1.0)
  c.control.num_random = 1
  c.control.pool_size = 6
  c.control.cikd_weight = 1.0
  c.control.cikd_normalize = False
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  return c
