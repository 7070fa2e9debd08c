"""Controllable multi-task learning (Aich et al., ICCV 2023).

widths.py           WidthConfig, sandwich-rule sampling, config enumeration / sampling
sandwich_step.py    the sandwich-rule train step with CIKD and output distillation (train-step variant "sandwich")
coverage.py         the students of each step: every (encoder width, head width) pair of every task, per block
output_distill.py   distillation of the largest configuration's outputs (KL / squared distance per task kind)
cikd.py             cikd_loss: student encoder features vs stop-gradient full-width features
macs.py             exact MAC counts (closed form, jaxpr-traced, XLA per-op check)
search.py           budget + task preference -> WidthConfig from measured validation metrics
controllability.py  simplex preference grid, Spearman preference/performance correlation, 2-D hypervolume,
                    per-task fronts, budget curves, Pareto PNGs
latency.py          measured latency vs MACs ratio (`python -m mtl.control.latency [--workdir D]`)
"""
