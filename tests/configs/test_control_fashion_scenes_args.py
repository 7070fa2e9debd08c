"""Typed args of the fashion-scenes configs: res, seed, and the CIKD / output-distillation switches."""
import pytest

from configs import control_fashion_scenes, fashion_scenes


def test_res_seed_and_switches():
  c = control_fashion_scenes.get_config("res=32,steps=200,batch=16,seed=3,cikd=0,distill=0.5,num_random=2")
  assert c.dataset.name == "fashion_scenes32" and c.seed == 3 and c.num_steps == 200 and c.batch_size == 16
  assert c.control.cikd_weight == 0.0 and c.control.output_distill_weight == 0.5 and c.control.num_random == 2
  assert c.train_step == "sandwich" and "pool_size" not in c.control and c.control.student_weight == 1.0
  assert control_fashion_scenes.get_config("res=32,student_weight=0.5").control.student_weight == 0.5
  assert c.control.encoder_counts == (1, 1, 1, 1)
  assert control_fashion_scenes.get_config("res=32,encoder_counts=1+3+3+1").control.encoder_counts == (1, 3, 3, 1)
  assert c.control.head_counts == (1, 1, 1, 1)
  assert control_fashion_scenes.get_config("res=32,head_counts=1+3+3+1").control.head_counts == (1, 3, 3, 1)
  assert not c.model.head.private_output and c.control.uniform_students == ()
  assert control_fashion_scenes.get_config("res=32,uniform=0.75+0.5").control.uniform_students == (0.75, 0.5)
  c = control_fashion_scenes.get_config("uniform=0.5+0.75,uniform_per_step=1")
  assert c.control.uniform_per_step == 1 and control_fashion_scenes.get_config().control.uniform_per_step == 0
  assert c.control.sliced_students is False
  assert control_fashion_scenes.get_config("res=32,sliced=1").control.sliced_students is True
  assert control_fashion_scenes.get_config("private_out=1").model.head.private_output
  d = control_fashion_scenes.get_config(None)
  assert d.dataset.name == "fashion_scenes" and d.control.cikd_weight == 1.0 and d.control.output_distill_weight == 0
  assert fashion_scenes.get_config("semseg+depth,res=16").dataset.tasks == ("semseg", "depth")


def test_bad_args_raise():
  with pytest.raises(ValueError, match="res must be 64, 32 or 16"):
    fashion_scenes.get_config("res=48")
  with pytest.raises(ValueError, match="trains every width"):
    control_fashion_scenes.get_config("width=0.5")
  with pytest.raises(ValueError, match="unknown config arg"):
    control_fashion_scenes.get_config("pool=3")
  with pytest.raises(ValueError, match="private_out must be 0 or 1"):
    control_fashion_scenes.get_config("private_out=2")
  with pytest.raises(ValueError, match="config arg uniform='half': expected widths joined by"):
    control_fashion_scenes.get_config("uniform=half")
