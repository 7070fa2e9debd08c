"""Controllable CIFAR100-MTL (Aich et al., ICCV 2023): slimmable conv encoder and 20 slimmable classification
heads, sandwich rule + CIKD on the encoder features.

  python -m experiments.train --config configs/control_cifar100_mtl.py --workdir workdirs/ctrl_c100
  python -m experiments.control --workdir workdirs/ctrl_c100 --budget 0.5 --fixed_width_runs 0.5=workdirs/c100_w0.5
Args as configs/cifar100_mtl.py (tasks, steps=, batch=, lr=), except width.
"""
from configs import common, cifar100_mtl


def get_config(arg: str | None = None):
  _, rest = common.split_control_args(arg, "control_cifar100_mtl", "cifar100_mtl")
  c = cifar100_mtl.get_config(rest or None)
  return common.make_controllable(c)
