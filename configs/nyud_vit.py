"""NYUDv2 multi-task (semseg, depth, normals, edge) with a ViT-L/16 encoder and one dense head per task, on the
InvPT / TaskPrompter / TaskExpert protocol (configs/common_dense.py; data: mtl/data/builders/nyud.py).

  python -m experiments.train --config configs/nyud_vit.py:pretrained=/path/ViT-L_16.npz --workdir wd/nyud_vit
  python -m experiments.train --config configs/nyud_vit.py:smoke=1 --workdir /tmp/nyud_smoke   (tiny, CPU)

Encoder: ViT-L/16 (24 blocks, dim 1024, 16 heads; InvPT's vit_large_patch16_384, ImageNet-21k weights) loaded from
a big_vision .npz (`pretrained=`); the token map (1/16 resolution) feeds each task's DenseHead. This is the papers'
encoder and protocol, not their decoders (InvPT's UP-Transformer, TaskExpert's experts): compare the encoder +
simple-heads baseline rows of those papers, not their final ones. Args: see configs/common_dense.py.
"""
from configs import common_dense as db

WEIGHTS = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}  # InvPT nyud_vitLp16.yml loss_weights.


def get_config(arg: str | None = None):
  args = db.parse(arg, "nyud_vit")
  return db.vit_large(db.base("nyud", (448, 576), WEIGHTS, args), args.smoke)
