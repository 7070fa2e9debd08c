"""MMoE's synthetic two-task regression data (Ma et al., KDD 2018, section 4.2) with a chosen task correlation.

The paper's recipe, step by step (d input dims, scale c, correlation p in [-1, 1], m sine terms):
  1. two orthogonal unit vectors u1, u2 in R^d (here: the first two rows of a Haar-random orthogonal matrix);
  2. weights w1 = c u1 and w2 = c (p u1 + sqrt(1 - p^2) u2), so cos(w1, w2) = p;
  3. inputs x ~ N(0, I_d);
  4. labels y_t = w_t^T x + sum_{i=1}^m sin(alpha_i w_t^T x + beta_i) + eps_t, eps_t ~ N(0, 0.01) i.i.d.;
  5. repeat 3-4 for every example.
The paper sets the shape parameters alpha_i, beta_i "given" but does not print their values; here they are drawn
once per dataset, alpha_i, beta_i ~ N(0, 1), from the same seed as u1, u2 (both tasks share them, as in the
paper). N(0, 0.01) is read as variance 0.01 (noise std 0.1). Defaults d=100, c=1, m=10.

Because labels are non-linear in w^T x, p is the cosine similarity of the task weights, not the Pearson
correlation of the labels (the paper notes the same); `label_correlation` measures the latter.

Datasets are registered for the correlations in `CORRELATIONS` as 'mmoe_synthetic_c<100 p>' (e.g.
'mmoe_synthetic_c050' for p = 0.5, 'mmoe_synthetic_cm050' for p = -0.5); `make_spec(p)` makes one for any
other p. Every split is drawn from the same task weights with its own inputs; seed `SEED` fixes them all.
Inputs 'features' float32 [B, d]; targets 'y1', 'y2' float32 [B] (task kind 'regression', metric 'mse').
"""
from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow_datasets as tfds

from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.spec import DatasetSpec
from mtl.tasks.base import TaskSpec

DIM, SCALE, NUM_SINES, NOISE_VAR = 100, 1.0, 10, 0.01
SPLITS = {"train": 10_000, "validation": 1_000, "test": 2_000}
SEED = 20180819
CORRELATIONS = (1.0, 0.9, 0.8, 0.7, 0.5, 0.0)
TASKS = (TaskSpec("y1", "regression", 1, metric="mse", higher_is_better=False),
         TaskSpec("y2", "regression", 1, metric="mse", higher_is_better=False))


def task_weights(correlation: float, rng: np.random.Generator, dim: int = DIM, scale: float = SCALE
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Steps 1-2: w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2) for orthogonal unit u1, u2; float64 [d] each."""
  if not -1.0 <= correlation <= 1.0:
    raise ValueError(f"task correlation must be in [-1, 1], got {correlation}")
  if dim < 2:
    raise ValueError(f"need at least 2 input dims for two orthogonal vectors, got {dim}")
  q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
  q = q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
  u1, u2 = q[:, 0], q[:, 1]
  return scale * u1, scale * (correlation * u1 + math.sqrt(1.0 - correlation ** 2) * u2)


def labels(x: np.ndarray, w: np.ndarray, alphas: np.ndarray, betas: np.ndarray, noise: np.ndarray) -> np.ndarray:
  """Step 4: y = w^T x + sum_i sin(alpha_i w^T x + beta_i) + noise; x [N, d], noise [N] -> float64 [N]."""
  z = x @ w
  return z + np.sin(alphas[None, :] * z[:, None] + betas[None, :]).sum(-1) + noise


def generate(correlation: float, sizes: dict[str, int] | None = None, seed: int = SEED, dim: int = DIM,
             scale: float = SCALE, num_sines: int = NUM_SINES, noise_var: float = NOISE_VAR
             ) -> dict[str, dict[str, np.ndarray]]:
  """split -> {'features' float32 [N, d], 'y1', 'y2' float32 [N]}; one set of task weights for all splits."""
  sizes = dict(SPLITS if sizes is None else sizes)
  if any(n < 1 for n in sizes.values()) or num_sines < 0 or noise_var < 0:
    raise ValueError(f"need split sizes >= 1, num_sines >= 0, noise_var >= 0; got {sizes}, {num_sines}, {noise_var}")
  rng = np.random.default_rng(seed)
  w1, w2 = task_weights(correlation, rng, dim, scale)
  alphas, betas = rng.standard_normal(num_sines), rng.standard_normal(num_sines)
  out = {}
  for split, n in sizes.items():
    x = rng.standard_normal((n, dim))
    eps = rng.standard_normal((2, n)) * math.sqrt(noise_var)
    out[split] = {"features": x.astype(np.float32),
                  "y1": labels(x, w1, alphas, betas, eps[0]).astype(np.float32),
                  "y2": labels(x, w2, alphas, betas, eps[1]).astype(np.float32)}
  return out


def label_correlation(data: dict[str, np.ndarray]) -> float:
  """Pearson correlation of the two labels of one split."""
  return float(np.corrcoef(data["y1"], data["y2"])[0, 1])


def dataset_name(correlation: float) -> str:
  """'mmoe_synthetic_c050' for 0.5, 'mmoe_synthetic_cm050' for -0.5 (two decimals)."""
  if not -1.0 <= correlation <= 1.0:
    raise ValueError(f"task correlation must be in [-1, 1], got {correlation}")
  hundredths = int(round(correlation * 100))
  if abs(hundredths - correlation * 100) > 1e-6:
    raise ValueError(f"correlation {correlation} has more than two decimals; dataset names hold hundredths")
  return f"mmoe_synthetic_c{'m' if hundredths < 0 else ''}{abs(hundredths):03d}"


def _collate(records: dict, tasks: tuple[TaskSpec, ...]) -> dict:
  out = {"features": records["features"].astype(np.float32)}
  for t in tasks:
    out[t.target_key] = records[t.name].astype(np.float32)
  return out


@functools.lru_cache(maxsize=None)
def make_spec(correlation: float) -> DatasetSpec:
  """Dataset spec (and TFDS builder class, registered as 'mtl_<name>') of the data at task correlation p."""
  name = dataset_name(correlation)

  def _arrays(self):
    if self._source:
      raise ValueError(f"{self.name} is generated, it reads no source files; got source={self._source!r}")
    return generate(correlation)

  builder = type("Mtl" + "".join(p.capitalize() for p in name.split("_")), (ArrayBuilder,), {
      "name": PREFIX + name, "VERSION": tfds.core.Version("1.0.0"), "DESCRIPTION": __doc__,
      "FEATURES": {"features": tfds.features.Tensor(shape=(DIM,), dtype=np.float32),
                   "y1": tfds.features.Tensor(shape=(), dtype=np.float32),
                   "y2": tfds.features.Tensor(shape=(), dtype=np.float32)},
      "_arrays": _arrays, "__module__": __name__})
  return DatasetSpec(name=name, builder=builder, input_key="features", input_shape=(DIM,), tasks=TASKS,
                     splits=dict(SPLITS), collate=_collate)


SPECS = tuple(make_spec(p) for p in CORRELATIONS)
