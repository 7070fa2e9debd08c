"""experiments.uptrain_gqa: the uptraining config (the conversion itself: tests/nn/test_attention_gqa.py)."""
import pytest

from configs import lm_gcide
from mtl.models.gqa_uptrain import uptrain_config


def test_uptrain_config_sets_kv_heads_and_short_schedule():
  src = lm_gcide.get_config("mixer=softmax,steps=600,heads=4")
  cfg = uptrain_config(src, 2, 60, 3e-4)
  assert cfg.model.lm.num_kv_heads == 2 and cfg.num_steps == 60 and cfg.checkpoint.every_steps == 60
  assert cfg.optimizer.warmup_steps == 6 and cfg.optimizer.learning_rate == 3e-4
  assert src.model.lm.num_kv_heads is None                 # the source config is untouched
  assert uptrain_config(src, 4, None, None).model.lm.num_kv_heads is None   # H: continue multi-head
  assert uptrain_config(src, 1, None, None).num_steps == 30                 # default 5% of the source
  assert uptrain_config(src, 1, None, None, src_step=400).num_steps == 20   # ... of its trained steps


@pytest.mark.parametrize("arg, kv, match", [
    ("mixer=lightning", 2, "softmax-mixer"), ("mixer=softmax,heads=4", 3, "divide"),
    ("mixer=softmax,heads=4,kv_heads=2", 1, "already has num_kv_heads")])
def test_uptrain_config_rejects_bad_sources(arg, kv, match):
  with pytest.raises(ValueError, match=match):
    uptrain_config(lm_gcide.get_config(arg), kv, 10, None)


def test_uptrain_config_with_distillation_from_the_source():
  src = lm_gcide.get_config("mixer=softmax,steps=600,heads=4")
  assert uptrain_config(src, 2, 60, None).train_step == "standard"        # the paper's recipe: no teacher
  cfg = uptrain_config(src, 2, 60, None, src_step=600, teacher_workdir="/runs/mha", kd_weight=0.5)
  assert cfg.train_step == "teacher_distill"
  assert cfg.teacher.to_dict() == {"workdir": "/runs/mha", "step": 600, "kd_weight": 0.5}
  with pytest.raises(ValueError, match="needs teacher_workdir"):
    uptrain_config(src, 2, 60, None, kd_weight=0.5)
  with pytest.raises(ValueError, match="kd_weight must be >= 0"):
    uptrain_config(src, 2, 60, None, teacher_workdir="/runs/mha", kd_weight=-1.0)
