"""MMoE's synthetic two-task regression (mmoe_synthetic.py) with task y2's targets scaled by a factor k, so its
squared-error loss is about k^2 times y1's: a task pair with deliberately unbalanced loss scales.

Equal weighting of such a pair follows the large task; the multi-task optimisers differ exactly here (loss
weighting rescales the losses, gradient methods see gradient norms k apart). The data are those of
`mmoe_synthetic.generate(correlation)` (same seed, inputs and task weights) with y2 multiplied by k (its noise
included), so y2's MSE is k^2 times what it is on the balanced dataset for the same prediction/k.

Datasets are registered for (correlation, k) in `VARIANTS` as 'mmoe_synthetic_c<100 p>_y2x<k>' (e.g.
'mmoe_synthetic_c050_y2x10': p = 0.5, y2 x 10, loss ratio ~ 100); `make_spec(p, k)` makes one for other values.
k = 1 is the balanced dataset (an error here: use mmoe_synthetic's name); k must be a positive integer, so the
name holds it exactly. Inputs 'features' float32 [B, 100]; targets 'y1', 'y2' float32 [B] (regression, mse).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow_datasets as tfds

from mtl.data.builders import mmoe_synthetic as ms
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.spec import DatasetSpec

VARIANTS = ((0.5, 10),)


def check_scale(y2_scale) -> int:
  """The target scale k as an int >= 2; anything else raises (k = 1 would be the balanced dataset)."""
  numeric = isinstance(y2_scale, (int, np.integer, float)) and not isinstance(y2_scale, bool)
  if not numeric or not math.isfinite(y2_scale) or y2_scale != int(y2_scale):
    raise ValueError(f"y2_scale must be an integer >= 2 (targets of y2 times k), got {y2_scale!r}")
  if int(y2_scale) < 2:
    raise ValueError(f"y2_scale must be an integer >= 2, got {y2_scale!r} (1 is the balanced dataset, "
                     "mmoe_synthetic_c<p>; 0 erases task y2 and a negative scale only flips its sign)")
  return int(y2_scale)


def generate(correlation: float, y2_scale: int, sizes: dict[str, int] | None = None, seed: int = ms.SEED
             ) -> dict[str, dict[str, np.ndarray]]:
  """split -> {'features' float32 [N, 100], 'y1', 'y2' float32 [N]}: mmoe_synthetic's data with y2 x k."""
  k = check_scale(y2_scale)
  data = ms.generate(correlation, sizes, seed)
  for split in data.values():
    split["y2"] = (split["y2"].astype(np.float64) * k).astype(np.float32)
  return data


def dataset_name(correlation: float, y2_scale: int) -> str:
  """'mmoe_synthetic_c050_y2x10' for p = 0.5, k = 10."""
  return f"{ms.dataset_name(correlation)}_y2x{check_scale(y2_scale)}"


@functools.lru_cache(maxsize=None)
def make_spec(correlation: float, y2_scale: int) -> DatasetSpec:
  """Dataset spec (and TFDS builder class, registered as 'mtl_<name>') of the data at (p, k)."""
  name = dataset_name(correlation, y2_scale)

  def _arrays(self):
    if self._source:
      raise ValueError(f"{self.name} is generated, it reads no source files; got source={self._source!r}")
    return generate(correlation, y2_scale)

  builder = type("Mtl" + "".join(p.capitalize() for p in name.split("_")), (ArrayBuilder,), {
      "name": PREFIX + name, "VERSION": tfds.core.Version("1.0.0"), "DESCRIPTION": __doc__,
      "FEATURES": {"features": tfds.features.Tensor(shape=(ms.DIM,), dtype=np.float32),
                   "y1": tfds.features.Tensor(shape=(), dtype=np.float32),
                   "y2": tfds.features.Tensor(shape=(), dtype=np.float32)},
      "_arrays": _arrays, "__module__": __name__})
  return DatasetSpec(name=name, builder=builder, input_key="features", input_shape=(ms.DIM,), tasks=ms.TASKS,
                     splits=dict(ms.SPLITS), collate=ms.make_spec(correlation).collate)


SPECS = tuple(make_spec(p, k) for p, k in VARIANTS)
