"""optax optimizer and learning-rate schedule from `config.optimizer`, strictly validated.

A config cannot describe an optimizer other than the one that runs: every field of `config.optimizer` must be
read by the chosen optimizer or schedule, else `build_optimizer` raises naming the field (e.g. `weight_decay`
with `name='adam'`: optax.adam has no weight decay, use 'adamw'). Fields:
  always        name, learning_rate, warmup_steps, schedule, grad_clip_norm (0 = off)
  schedule      'constant' | 'cosine' (+ final_lr_fraction: the cosine's end value / learning_rate) |
                'poly' (+ poly_power: lr * (1 - t / T) ** poly_power, default 0.9)
  sgd           (nothing else)
  momentum      momentum (Nesterov SGD; default 0.9)
  adam          b1, b2, eps
  adamw         b1, b2, eps, weight_decay (decoupled, Loshchilov & Hutter 2019; default 1e-4)
"""
from __future__ import annotations

from typing import Any

import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "poly")
COMMON_FIELDS = frozenset({"name", "learning_rate", "warmup_steps", "schedule", "grad_clip_norm"})
OPTIMIZER_FIELDS = {
    "sgd": frozenset(),
    "momentum": frozenset({"momentum"}),
    "adam": frozenset({"b1", "b2", "eps"}),
    "adamw": frozenset({"b1", "b2", "eps", "weight_decay"}),
}
SCHEDULE_FIELDS = {"constant": frozenset(), "cosine": frozenset({"final_lr_fraction"}),
                   "poly": frozenset({"poly_power"})}


def _fields(cfg: Any) -> dict:
  return cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)


def check_optimizer_config(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first field the chosen optimizer or schedule would ignore, or a bad name."""
  fields = _fields(cfg)
  name = fields.get("name", "adam")
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {name!r}; known: {OPTIMIZERS}")
  schedule = fields.get("schedule", "cosine")
  if schedule not in SCHEDULES:
    raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {schedule!r}")
  allowed = COMMON_FIELDS | OPTIMIZER_FIELDS[name] | SCHEDULE_FIELDS[schedule]
  for field in sorted(set(fields) - allowed):
    hint = ""
    if field == "weight_decay":
      hint = " (set optimizer.name = 'adamw' for decoupled weight decay, or remove the field)"
    elif field == "final_lr_fraction":
      hint = " (only the cosine schedule has a final learning rate)"
    elif any(field in f for f in OPTIMIZER_FIELDS.values()):
      users = [n for n, f in OPTIMIZER_FIELDS.items() if field in f]
      hint = f" (used by {users})"
    raise ValueError(f"optimizer.{field}={fields[field]!r} has no effect with optimizer.name={name!r} and "
                     f"schedule={schedule!r}{hint}")


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warm-up for `cfg.warmup_steps`, then `cfg.schedule` in {'constant', 'cosine', 'poly'} to the end
  ('poly': lr * (1 - t / T) ** poly_power, default 0.9, the schedule of the dense multi-task papers)."""
  lr, warmup = float(cfg.learning_rate), int(cfg.get("warmup_steps", 0))
  if lr <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0, got {lr}")
  if not 0 <= warmup < max(total_steps, 1):
    raise ValueError(f"optimizer.warmup_steps must be in [0, num_steps={total_steps}), got {warmup}")
  kind = cfg.get("schedule", "cosine")
  if kind == "constant":
    decay = optax.constant_schedule(lr)
  elif kind == "cosine":
    final = float(cfg.get("final_lr_fraction", 0.0))
    if not 0.0 <= final <= 1.0:
      raise ValueError(f"optimizer.final_lr_fraction must be in [0, 1], got {final}")
    decay = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=final)
  elif kind == "poly":
    power = float(cfg.get("poly_power", 0.9))
    if power <= 0:
      raise ValueError(f"optimizer.poly_power must be > 0, got {power}")
    decay = optax.polynomial_schedule(lr, 0.0, power, max(total_steps - warmup, 1))
  else:
    raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {kind!r}")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """The optimizer `cfg` describes (see the module docstring); any field it would ignore raises ValueError."""
  check_optimizer_config(cfg)
  schedule = learning_rate_schedule(cfg, total_steps)
  name = cfg.get("name", "adam")
  adam_kw = {k: float(cfg[k]) for k in ("b1", "b2", "eps") if k in cfg}
  if name == "sgd":
    opt = optax.sgd(schedule)
  elif name == "momentum":
    momentum = float(cfg.get("momentum", 0.9))
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"optimizer.momentum must be in [0, 1), got {momentum}")
    opt = optax.sgd(schedule, momentum=momentum, nesterov=True)
  elif name == "adam":
    opt = optax.adam(schedule, **adam_kw)
  else:
    wd = float(cfg.get("weight_decay", 1e-4))
    if wd < 0:
      raise ValueError(f"optimizer.weight_decay must be >= 0, got {wd}")
    opt = optax.adamw(schedule, weight_decay=wd, **adam_kw)
  clip = float(cfg.get("grad_clip_norm", 0.0))
  if clip < 0:
    raise ValueError(f"optimizer.grad_clip_norm must be >= 0, got {clip}")
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
