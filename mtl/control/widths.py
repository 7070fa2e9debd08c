"""Width configurations (encoder width + one width per task decoder) and sandwich-rule sampling.

A `WidthConfig` is hashable and static: pass `config.apply_kwargs()` to `MultiTaskModel.__call__`
(`encoder_width=..., head_widths={...}`). Because widths set array shapes, a jitted train step is
compiled once per distinct config; with W allowed widths and T tasks there are W ** (T + 1) configs, so
samplers draw from the allowed list (no continuous widths).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterator, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, order=True)
class WidthConfig:
  """encoder: encoder width multiplier; heads: ((task, width), ...) sorted by task name."""
  encoder: float
  heads: tuple[tuple[str, float], ...]

  @classmethod
  def create(cls, encoder: float, heads: Mapping[str, float]) -> "WidthConfig":
    return cls(float(encoder), tuple(sorted((str(k), float(v)) for k, v in heads.items())))

  @property
  def head_widths(self) -> dict[str, float]:
    return dict(self.heads)

  def apply_kwargs(self) -> dict:
    """Keyword arguments for `MultiTaskModel.__call__`."""
    return {"encoder_width": self.encoder, "head_widths": self.head_widths}

  def key(self) -> str:
    """Readable, parseable string, e.g. 'enc=0.5,left=1,right=0.25' (see `parse_config`)."""
    parts = [f"enc={self.encoder:g}"] + [f"{t}={w:g}" for t, w in self.heads]
    return ",".join(parts)

  def validate(self, widths: Sequence[float], tasks: Sequence[str]) -> "WidthConfig":
    """Raises ValueError unless all widths are allowed and the heads are exactly `tasks`."""
    allowed = [float(w) for w in widths]

    def ok(w):
      return any(math.isclose(w, a, abs_tol=1e-9) for a in allowed)

    if not ok(self.encoder):
      raise ValueError(f"encoder width {self.encoder} is not one of the allowed widths {allowed}")
    if sorted(self.head_widths) != sorted(tasks):
      raise ValueError(f"config has heads {sorted(self.head_widths)} but the tasks are {sorted(tasks)}")
    bad = {t: w for t, w in self.heads if not ok(w)}
    if bad:
      raise ValueError(f"head widths {bad} are not in the allowed widths {allowed}")
    return self


def parse_config(key: str) -> WidthConfig:
  """Inverse of `WidthConfig.key()`."""
  try:
    items = dict(part.split("=", 1) for part in key.split(","))
    enc = float(items.pop("enc"))
    return WidthConfig.create(enc, {k: float(v) for k, v in items.items()})
  except (KeyError, ValueError) as e:
    raise ValueError(f"cannot parse width config {key!r}; expected 'enc=W,task=W,...' ({e})") from e


def _check(widths: Sequence[float], tasks: Sequence[str]) -> tuple[tuple[float, ...], tuple[str, ...]]:
  ws = tuple(sorted({float(w) for w in widths}))
  if not ws or any(not 0 < w <= 1 for w in ws):
    raise ValueError(f"widths must be a non-empty list of values in (0, 1], got {tuple(widths)}")
  if not tasks or len(set(tasks)) != len(tasks):
    raise ValueError(f"tasks must be a non-empty list of distinct names, got {tuple(tasks)}")
  return ws, tuple(tasks)


def largest(widths: Sequence[float], tasks: Sequence[str]) -> WidthConfig:
  ws, tasks = _check(widths, tasks)
  return WidthConfig.create(ws[-1], {t: ws[-1] for t in tasks})


def smallest(widths: Sequence[float], tasks: Sequence[str]) -> WidthConfig:
  ws, tasks = _check(widths, tasks)
  return WidthConfig.create(ws[0], {t: ws[0] for t in tasks})


def all_configs(widths: Sequence[float], tasks: Sequence[str]) -> Iterator[WidthConfig]:
  """Every config (W ** (T + 1) of them), encoder width outermost."""
  ws, tasks = _check(widths, tasks)
  for combo in itertools.product(ws, repeat=len(tasks) + 1):
    yield WidthConfig.create(combo[0], dict(zip(tasks, combo[1:])))


def uniform_head_configs(widths: Sequence[float], tasks: Sequence[str]) -> list[WidthConfig]:
  """The W * W configs (encoder e, every head at h): together they hold every (encoder, head) width pair."""
  ws, tasks = _check(widths, tasks)
  return [WidthConfig.create(e, {t: h for t in tasks}) for e in ws for h in ws]


def random_config(rng: np.random.Generator, widths: Sequence[float], tasks: Sequence[str]) -> WidthConfig:
  """Encoder and every head width drawn independently and uniformly from `widths`."""
  ws, tasks = _check(widths, tasks)
  draw = rng.integers(0, len(ws), size=len(tasks) + 1)
  return WidthConfig.create(ws[draw[0]], {t: ws[i] for t, i in zip(tasks, draw[1:])})


def sandwich(rng: np.random.Generator, widths: Sequence[float], tasks: Sequence[str],
             num_random: int = 2) -> list[WidthConfig]:
  """Sandwich rule: [largest, smallest, num_random random configs] for one training step.

  The first entry is the full-width teacher (its encoder features are the CIKD target of the others).
  """
  if num_random < 0:
    raise ValueError(f"num_random must be >= 0, got {num_random}")
  return ([largest(widths, tasks), smallest(widths, tasks)]
          + [random_config(rng, widths, tasks) for _ in range(num_random)])


def sandwich_for_step(seed: int, step: int, widths: Sequence[float], tasks: Sequence[str],
                      num_random: int = 2) -> list[WidthConfig]:
  """Deterministic `sandwich` for (seed, step): resuming at a step redraws the same configs."""
  return sandwich(np.random.default_rng([seed, step]), widths, tasks, num_random)


def sample_configs(rng: np.random.Generator, widths: Sequence[float], tasks: Sequence[str],
                   num: int) -> list[WidthConfig]:
  """`num` distinct configs to measure for the search: largest, smallest, every uniform config
  (encoder and heads at the same width), then distinct random ones; all configs when num >= W ** (T + 1)."""
  ws, tasks = _check(widths, tasks)
  total = len(ws) ** (len(tasks) + 1)
  if num < 2:
    raise ValueError(f"num must be >= 2 (largest and smallest), got {num}")
  if num >= total:
    return list(all_configs(ws, tasks))
  out = [largest(ws, tasks), smallest(ws, tasks)]
  out += [WidthConfig.create(w, {t: w for t in tasks}) for w in ws[1:-1]]
  out = list(dict.fromkeys(out))[:num]
  seen = set(out)
  while len(out) < num:
    c = random_config(rng, ws, tasks)
    if c not in seen:
      seen.add(c)
      out.append(c)
  return out
