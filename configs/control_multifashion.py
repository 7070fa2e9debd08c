"""Controllable MultiFashion (Aich et al., ICCV 2023): slimmable conv encoder + heads, sandwich rule + CIKD.

  python -m experiments.train --config configs/control_multifashion.py --workdir workdirs/ctrl_mf
  python -m experiments.control --workdir workdirs/ctrl_mf --budget 0.5 --preference 0.7,0.3 \
      --fixed_width_runs 1.0=workdirs/mf_w1,0.5=workdirs/mf_w0.5
(the fixed-width runs: --config configs/multifashion.py:hidden=64,steps=1500,width=0.5, ...; same steps, batch
and seed). Args as configs/multifashion.py (tasks, steps= default 1500, hidden= default 64, seed=), except width,
plus cikd= and distill= (weights of CIKD and of output distillation, 0 = off; default 1 and 0: at 1500 steps,
seed 0, output distillation cost 2.9-3.9 points of delta-m at every width and CIKD 1.2 points or less,
docs/control_multifashion.md), num_random= (students per step beside the largest and smallest, default 1) and
student_weight= (weight of the students' task losses, default 1) and encoder_counts= (how often each encoder
width, ascending, is a student per covering block, e.g. 1+3+3+1; default 1+1+1+1) and head_counts= (the same for
the head widths of every task; default 1+1+1+1) and uniform= (middle widths joined by '+', e.g. 0.5+0.75, whose
uniform configuration, encoder and every head at that width, is trained every step beside the drawn students;
default none) and uniform_per_step= (how many of them each step trains, round robin; default 0 = all) and sliced=
(1: each drawn student has one head width for every task and is sliced, 16 compiled variants, instead of running
full-width heads with masks; default 0).
"""
from configs import common, multifashion


def get_config(arg: str | None = None):
  mine, rest = common.split_control_args(arg, "control_multifashion", "multifashion", cikd=1.0, distill=0.0,
                                         num_random=1, student_weight=1.0, encoder_counts=(1, 1, 1, 1),
                                         head_counts=(1, 1, 1, 1), uniform="", uniform_per_step=0, sliced=False)
  rest = [p for p in rest.split(",") if p]
  keys = {p.split("=")[0] for p in rest}
  rest += [f"{k}={v}" for k, v in (("steps", 1500), ("hidden", 64)) if k not in keys]
  c = multifashion.get_config(",".join(rest))
  return common.make_controllable(c, cikd_weight=mine.cikd, output_distill_weight=mine.distill,
                                  num_random=mine.num_random, student_weight=mine.student_weight,
                                  encoder_counts=mine.encoder_counts, head_counts=mine.head_counts,
                                  uniform_students=common.widths_arg("uniform", mine.uniform),
                                  uniform_per_step=mine.uniform_per_step,
                                  sliced_students=mine.sliced)
