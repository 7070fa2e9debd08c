"""Controllable dense multi-task model on fashion scenes (Aich et al., ICCV 2023): slimmable conv encoder and
slimmable dense heads (semseg, depth, edges), sandwich rule + CIKD on the encoder features. The heads run at
full resolution, so unlike MultiFashion's classifiers they carry a real share of the MACs and the preference
over tasks moves compute between them.

  python -m experiments.train --config configs/control_fashion_scenes.py --workdir workdirs/ctrl_fs
  python -m experiments.control --workdir workdirs/ctrl_fs --budget 0.5 --preference 0.6,0.2,0.2 \
      --fixed_width_runs 0.5=workdirs/fs_w0.5,1.0=workdirs/fs_w1
(the fixed-width runs: --config configs/fashion_scenes.py:width=0.5, ...; same steps and batch).
Args as configs/fashion_scenes.py (tasks, steps=, batch=, lr=, res=, seed=), except width, plus cikd= and
distill= (the weights of CIKD and of output distillation, 0 = off; default 1 and 0: at 2000 steps on fashion
scenes 32x32 output distillation cost 8-36 points of delta-m, docs/control_fashion_scenes.md), num_random=
(students per step beside the largest and smallest, default 1) and student_weight= (weight of the students' task
losses against the largest configuration's, default 1 = the paper's plain sum) and encoder_counts= (how often
each encoder width, ascending, is a student per covering block, e.g. 1+3+3+1 for the middle widths, which the
largest and smallest configurations never train; default 1+1+1+1) and head_counts= (the same for every task's
head widths: 1+3+3+1 makes the middle head widths 3/8 of the students' each; default 1+1+1+1) and private_out=
(1: each head width reads its hidden units with its own last 1x1 conv, `DenseHead(private_output=True)`;
default 0: the nested shared readout) and uniform= (middle widths joined by '+', e.g. 0.5+0.75, whose
uniform configuration, encoder and every head at that width, is trained every step beside the drawn students;
default none) and uniform_per_step= (how many of them each step trains, round robin; default 0 = all) and sliced=
(1: each drawn student has one head width for every task and is sliced, 16 compiled variants, instead of running
full-width heads with masks; default 0).
"""
from configs import common, fashion_scenes


def get_config(arg: str | None = None):
  mine, rest = common.split_control_args(arg, "control_fashion_scenes", "fashion_scenes", cikd=1.0, distill=0.0,
                                         num_random=1, student_weight=1.0, encoder_counts=(1, 1, 1, 1),
                                         head_counts=(1, 1, 1, 1), uniform="", uniform_per_step=0, sliced=False,
                                         private_out=0)
  if mine.private_out not in (0, 1):
    raise ValueError(f"control_fashion_scenes: private_out must be 0 or 1, got {mine.private_out}")
  c = fashion_scenes.get_config(rest or None)
  c.model.head.private_output = bool(mine.private_out)
  return common.make_controllable(c, cikd_weight=mine.cikd, output_distill_weight=mine.distill,
                                  num_random=mine.num_random, student_weight=mine.student_weight,
                                  encoder_counts=mine.encoder_counts, head_counts=mine.head_counts,
                                  uniform_students=common.widths_arg("uniform", mine.uniform),
                                  uniform_per_step=mine.uniform_per_step,
                                  sliced_students=mine.sliced)
