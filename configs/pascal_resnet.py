"""PASCAL-Context multi-task with a slimmable ResNet-34 (or 18) encoder at output stride 16 (or 8) and dense heads;
`control=1` trains it as a controllable model (widths 0.25..1 for encoder and heads, sandwich rule + CIKD).

  python -m experiments.train --config configs/pascal_resnet.py:pretrained=/path/resnet34.safetensors,control=1 \
      --workdir wd/pascal_r34_control
  python -m experiments.train --config configs/pascal_resnet.py:smoke=1 --workdir /tmp/pascal_r_smoke
Args: configs/common_dense.py and configs/common_resnet_dense.py.
"""
from configs import common_resnet_dense as resnet_dense
from configs.pascal_vit import WEIGHTS


def get_config(arg: str | None = None):
  return resnet_dense.config("pascal_resnet", "pascal_context", (512, 512), WEIGHTS, arg)
