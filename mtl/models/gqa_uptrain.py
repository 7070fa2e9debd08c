"""The GQA uptraining config (Ainslie et al. 2023): a multi-head LM run's config turned into the short
grouped-query run that `experiments/uptrain_gqa.py` trains from the mean-pooled checkpoint. Kept here (not in the
command's module, which defines absl flags at import) so tools and tests can build it."""
from __future__ import annotations

import ml_collections


def uptrain_config(src: ml_collections.ConfigDict, num_kv_heads: int, steps: int | None,
                   learning_rate: float | None, src_step: int | None = None, teacher_workdir: str | None = None,
                   kd_weight: float = 0.0) -> ml_collections.ConfigDict:
  """The uptraining config: the source's with num_kv_heads, a short schedule and one final checkpoint.
  src_step: steps the source was trained (default its num_steps); N defaults to 5% of it.
  kd_weight > 0: also distil from the source checkpoint in `teacher_workdir` (train step 'teacher_distill',
  per task loss + kd_weight * KL(source || student); not in the paper's recipe, which is kd_weight 0)."""
  if src.model.get("name") != "lm" or src.model.lm.get("mixer") != "softmax":
    raise ValueError(f"GQA uptraining needs a softmax-mixer 'lm' run, got model {src.model.get('name')!r} "
                     f"mixer {src.model.get('lm', {}).get('mixer')!r}")
  heads = int(src.model.lm.num_heads)
  if src.model.lm.get("num_kv_heads") not in (None, heads):
    raise ValueError(f"source run already has num_kv_heads={src.model.lm.num_kv_heads}; uptrain from multi-head")
  if num_kv_heads <= 0 or heads % num_kv_heads:
    raise ValueError(f"num_kv_heads {num_kv_heads} must be positive and divide the source's {heads} heads")
  cfg = ml_collections.ConfigDict(src.to_dict())
  n = steps if steps is not None else max(1, round(0.05 * (src_step or src.num_steps)))
  if n <= 0:
    raise ValueError(f"steps must be positive, got {n}")
  cfg.model.lm.num_kv_heads = None if num_kv_heads == heads else num_kv_heads
  cfg.num_steps = n
  cfg.optimizer.warmup_steps = min(int(src.optimizer.get("warmup_steps", 0)), n // 10)
  if learning_rate is not None:
    cfg.optimizer.learning_rate = learning_rate
  cfg.checkpoint.every_steps = n
  cfg.eval_every = 0
  if cfg.get("draft", {}).get("widths", ()):   # no nested drafts while uptraining
    cfg.draft.widths = ()
    cfg.train_step = "standard"
  if kd_weight < 0 or kd_weight != kd_weight:
    raise ValueError(f"kd_weight must be >= 0 (0: no distillation), got {kd_weight}")
  if kd_weight > 0:
    if not teacher_workdir:
      raise ValueError("kd_weight > 0 needs teacher_workdir (the source run to distil from)")
    cfg.train_step = "teacher_distill"
    cfg.teacher = ml_collections.ConfigDict({"workdir": teacher_workdir, "step": src_step, "kd_weight": kd_weight})
  return cfg
