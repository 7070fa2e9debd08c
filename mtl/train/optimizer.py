"""optax optimizer and learning-rate schedule from `config.optimizer`."""
from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warm-up for `cfg.warmup_steps`, then `cfg.schedule` in {'constant', 'cosine', 'poly'} to the end
  ('poly': lr * (1 - t / T) ** 0.9, the schedule of the dense multi-task papers)."""
  lr, warmup = float(cfg.learning_rate), int(cfg.get("warmup_steps", 0))
  if lr <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {lr}")
  if not 0 <= warmup < max(total_steps, 1):
    raise ValueError(f"optimizer.warmup_steps must be in [0, num_steps={total_steps}), got {warmup}")
  kind = cfg.get("schedule", "cosine")
  if kind == "constant":
    decay = optax.constant_schedule(lr)
  elif kind == "cosine":
    decay = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=cfg.get("final_lr_fraction", 0.0))
  elif kind == "poly":
    decay = optax.polynomial_schedule(lr, 0.0, float(cfg.get("poly_power", 0.9)), max(total_steps - warmup, 1))
  else:
    raise ValueError(f"optimizer.schedule must be 'constant', 'cosine' or 'poly', got {kind!r}")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """`cfg.name` in OPTIMIZERS, with `learning_rate`, `weight_decay`, `grad_clip_norm` (0 = off), `momentum`."""
  schedule = learning_rate_schedule(cfg, total_steps)
  name = cfg.get("name", "adam")
  if name == "sgd":
    opt = optax.sgd(schedule)
  elif name == "momentum":
    opt = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9), nesterov=True)
  elif name == "adam":
    opt = optax.adam(schedule)
  elif name == "adamw":
    opt = optax.adamw(schedule, weight_decay=cfg.get("weight_decay", 1e-4))
  else:
    raise ValueError(f"unknown optimizer.name {name!r}; known: {OPTIMIZERS}")
  clip = float(cfg.get("grad_clip_norm", 0.0))
  if clip < 0:
    raise ValueError(f"optimizer.grad_clip_norm must be >= 0, got {clip}")
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
