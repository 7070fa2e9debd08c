"""Controllable multi-task learning (Aich et al., ICCV 2023).

widths.py           WidthConfig, sandwich-rule sampling, config enumeration / sampling
sandwich_step.py    the sandwich-rule train step with CIKD (train-step variant "sandwich")
cikd.py             cikd_loss: student encoder features vs stop-gradient full-width features
macs.py             exact MAC counts (closed form, jaxpr-traced, XLA per-op check)
search.py           budget + task preference -> WidthConfig from measured validation metrics
controllability.py  Spearman preference/performance correlation, budget curves, Pareto PNGs
latency.py          measured latency vs MACs ratio (`python -m mtl.control.latency [--workdir D]`)
"""
