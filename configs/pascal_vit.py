"""PASCAL-Context multi-task (semseg, human_parts, saliency, normals, edge) with a ViT-L/16 encoder and one dense
head per task, on the InvPT / TaskPrompter / TaskExpert protocol (configs/common_dense.py; data:
mtl/data/builders/pascal_context.py).

  python -m experiments.train --config configs/pascal_vit.py:pretrained=/path/ViT-L_16.npz --workdir wd/pascal_vit
  python -m experiments.train --config configs/pascal_vit.py:smoke=1 --workdir /tmp/pascal_smoke   (tiny, CPU)

As configs/nyud_vit.py: the papers' encoder and protocol with simple dense heads, not their decoders.
"""
from configs import common_dense as db

# InvPT pascal_vitLp16.yml loss_weights.
WEIGHTS = {"semseg": 1.0, "human_parts": 2.0, "saliency": 5.0, "normals": 10.0, "edge": 50.0}


def get_config(arg: str | None = None):
  args = db.parse(arg, "pascal_vit")
  return db.vit_large(db.base("pascal_context", (512, 512), WEIGHTS, args), args.smoke)
