"""Named feature specs for tabular / recommendation inputs and the input layer that embeds them.

A spec string is 'name:dense:W' (W float columns, used as they are) or 'name:categorical:V:E' (one column
holding an integer id in [0, V), embedded into E dims). The specs tile the input row left to right, so a
batch x [B, F] must have F = sum of the column counts (W, or 1 per categorical feature). Ids outside [0, V)
(and non-integers, which are truncated) go to one extra out-of-vocabulary row of the feature's table.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

FEATURE_KINDS = ("dense", "categorical")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """One named input feature: `columns` input columns, `out_dim` dims after the input layer."""
  name: str
  kind: str
  width: int = 1  # dense: columns
  vocab_size: int = 0  # categorical: ids in [0, vocab_size)
  embed_dim: int = 0  # categorical: embedding dims

  @property
  def columns(self) -> int:
    return self.width if self.kind == "dense" else 1

  @property
  def out_dim(self) -> int:
    return self.width if self.kind == "dense" else self.embed_dim


def parse_feature(text: str) -> FeatureSpec:
  """'name:dense:W' or 'name:categorical:V:E' -> FeatureSpec; malformed specs raise naming the feature."""
  parts = str(text).split(":")
  name = parts[0]
  if not name:
    raise ValueError(f"feature spec {text!r}: empty feature name")
  if len(parts) < 2 or parts[1] not in FEATURE_KINDS:
    raise ValueError(f"feature {name!r}: spec {text!r} needs a kind in {FEATURE_KINDS} "
                     "('name:dense:W' or 'name:categorical:V:E')")
  want = 3 if parts[1] == "dense" else 4
  if len(parts) != want:
    raise ValueError(f"feature {name!r}: spec {text!r} must be "
                     f"{'name:dense:W' if want == 3 else 'name:categorical:V:E'}")
  try:
    nums = [int(p) for p in parts[2:]]
  except ValueError:
    raise ValueError(f"feature {name!r}: spec {text!r} has a non-integer size") from None
  if any(n < 1 for n in nums):
    raise ValueError(f"feature {name!r}: sizes must be >= 1, got {nums}")
  if parts[1] == "dense":
    return FeatureSpec(name, "dense", width=nums[0])
  return FeatureSpec(name, "categorical", vocab_size=nums[0], embed_dim=nums[1])


def parse_features(specs: Sequence[str | FeatureSpec], input_shape: tuple[int, ...] | None = None
                   ) -> tuple[FeatureSpec, ...]:
  """Parses and checks a feature list against the input shape (F,): names distinct, columns summing to F."""
  out = tuple(s if isinstance(s, FeatureSpec) else parse_feature(s) for s in specs)
  if not out:
    raise ValueError("no input features given (config.model.features is empty)")
  seen = set()
  for f in out:
    if f.name in seen:
      raise ValueError(f"feature {f.name!r} is named twice")
    if f.kind not in FEATURE_KINDS:
      raise ValueError(f"feature {f.name!r}: unknown kind {f.kind!r}; expected one of {FEATURE_KINDS}")
    seen.add(f.name)
  if input_shape is not None:
    if len(input_shape) != 1:
      raise ValueError(f"tabular features need inputs [B, F], got an example shape {input_shape}")
    layout, start = [], 0
    for f in out:
      layout.append(f"{f.name!r}: columns {start}-{start + f.columns - 1}")
      start += f.columns
    if start != input_shape[0]:
      last = out[-1] if start > input_shape[0] else None
      raise ValueError(f"features cover {start} columns but the input has {input_shape[0]}"
                       + (f"; feature {last.name!r} runs past the end" if last else "; columns left uncovered")
                       + f" ({', '.join(layout)})")
  return out


class TabularInput(nn.Module):
  """x [B, F] -> [B, sum of out_dim]: dense columns as they are, categorical ids embedded (+1 OOV row)."""
  features: tuple[FeatureSpec, ...]

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    cols = sum(f.columns for f in self.features)
    if x.ndim != 2 or x.shape[-1] != cols:
      raise ValueError(f"TabularInput expects x [B, {cols}] (features {[f.name for f in self.features]}), "
                       f"got {x.shape}")
    parts, start = [], 0
    for f in self.features:
      col = x[:, start:start + f.columns]
      start += f.columns
      if f.kind == "dense":
        parts.append(col.astype(jnp.float32))
        continue
      ids = col[:, 0]
      valid = (ids >= 0) & (ids < f.vocab_size)
      ids = jnp.where(valid, ids, f.vocab_size).astype(jnp.int32)
      parts.append(nn.Embed(f.vocab_size + 1, f.embed_dim, name=f"embed_{f.name}")(ids))
    return jnp.concatenate(parts, axis=-1)
