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
  c = db.base("pascal_context", (512, 512), WEIGHTS, args)
  smoke = args.smoke
  c.model.encoder.name = "vit"
  c.model.encoder.patch_size = 8 if smoke else 16
  c.model.encoder.dim = 32 if smoke else 1024
  c.model.encoder.depth = 1 if smoke else 24
  c.model.encoder.num_heads = 2 if smoke else 16
  c.model.encoder.spatial_output = True
  db.set_pretrained_format(c, "big_vision_vit")
  return c
