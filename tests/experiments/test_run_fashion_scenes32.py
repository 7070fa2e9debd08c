"""experiments/run_fashion_scenes32.sh: run names map to the config args they promise (DRY_RUN=1), and those
configs build."""
import os
import subprocess

import pytest

from configs import control_fashion_scenes, fashion_scenes

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "run_fashion_scenes32.sh")


def _dry(run: str, *args: str) -> tuple[str, str]:
  out = subprocess.run(["bash", SCRIPT, run, *args], env={**os.environ, "DRY_RUN": "1"}, capture_output=True,
                       text=True, check=False)
  if out.returncode:
    raise RuntimeError(out.stderr)
  cfg, workdir = out.stdout.split()
  return cfg, workdir


def test_suffixes_become_config_args():
  cfg, workdir = _dry("ctrl_none_sw0.5_c1331", "2000", "1", "32")
  assert workdir == "workdirs/runs/fs32_ctrl_none_sw0.5_c1331_s1_2000_b32"
  path, arg = cfg.split(":", 1)
  assert path == "configs/control_fashion_scenes.py"
  c = control_fashion_scenes.get_config(arg)
  assert c.control.encoder_counts == (1, 3, 3, 1) and c.control.student_weight == 0.5
  assert c.control.cikd_weight == 0 and c.control.output_distill_weight == 0 and c.seed == 1 and c.num_steps == 2000
  c = control_fashion_scenes.get_config(_dry("ctrl_cikd_c1421")[0].split(":", 1)[1])
  assert c.control.encoder_counts == (1, 4, 2, 1) and c.control.student_weight == 1.0 and c.control.cikd_weight == 1
  c = control_fashion_scenes.get_config(_dry("ctrl_none_sw0.25")[0].split(":", 1)[1])
  assert c.control.student_weight == 0.25 and c.control.encoder_counts == (1, 1, 1, 1)
  cfg, workdir = _dry("ctrl_none_sw0.5_c1331_h1221", "2000", "0", "32")
  assert workdir == "workdirs/runs/fs32_ctrl_none_sw0.5_c1331_h1221_s0_2000_b32"
  c = control_fashion_scenes.get_config(cfg.split(":", 1)[1])
  assert c.control.head_counts == (1, 2, 2, 1) and c.control.encoder_counts == (1, 3, 3, 1)
  assert c.control.student_weight == 0.5
  c = control_fashion_scenes.get_config(_dry("ctrl_none_h1331")[0].split(":", 1)[1])
  assert c.control.head_counts == (1, 3, 3, 1) and c.control.encoder_counts == (1, 1, 1, 1)
  assert not c.model.head.private_output
  c = control_fashion_scenes.get_config(_dry("ctrl_none_h1331_po")[0].split(":", 1)[1])
  assert c.control.head_counts == (1, 3, 3, 1) and c.model.head.private_output and c.control.uniform_students == ()
  cfg, workdir = _dry("ctrl_none_h1331_u", "2000", "1", "32")
  assert workdir == "workdirs/runs/fs32_ctrl_none_h1331_u_s1_2000_b32"
  c = control_fashion_scenes.get_config(cfg.split(":", 1)[1])
  assert c.control.uniform_students == (0.5, 0.75) and c.control.head_counts == (1, 3, 3, 1)
  assert not c.control.sliced_students
  c = control_fashion_scenes.get_config(_dry("ctrl_none_u_sl")[0].split(":", 1)[1])
  assert c.control.uniform_students == (0.5, 0.75) and c.control.sliced_students and c.control.uniform_per_step == 0
  cfg, workdir = _dry("ctrl_none_sw0.25_u1_sl", "2000", "1", "32")
  assert workdir == "workdirs/runs/fs32_ctrl_none_sw0.25_u1_sl_s1_2000_b32"
  c = control_fashion_scenes.get_config(cfg.split(":", 1)[1])
  assert c.control.uniform_students == (0.5, 0.75) and c.control.uniform_per_step == 1
  assert c.control.sliced_students and c.control.student_weight == 0.25
  c = fashion_scenes.get_config(_dry("w0.5", "300")[0].split(":", 1)[1])
  assert c.num_steps == 300 and c.model.head.hidden_dim == 16


def test_unknown_run_is_refused():
  with pytest.raises(RuntimeError, match="unknown run"):
    _dry("ctrl_bogus")
