"""MMoE's synthetic data (Ma et al. 2018, section 4.2): the recipe's invariants against float64 numpy, names."""
import math

import numpy as np
import pytest

from mtl.data import registry
from mtl.data.builders import mmoe_synthetic as ms


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0, -0.7, -1.0])
def test_task_weights_have_the_chosen_cosine(p):
  w1, w2 = ms.task_weights(p, np.random.default_rng(0), dim=100, scale=2.5)
  np.testing.assert_allclose([np.linalg.norm(w1), np.linalg.norm(w2)], [2.5, 2.5], rtol=1e-12)
  np.testing.assert_allclose(w1 @ w2 / 2.5 ** 2, p, atol=1e-12)
  u2 = (w2 / 2.5 - p * w1 / 2.5) / max(math.sqrt(1 - p * p), 1e-300)
  if abs(p) < 1:
    np.testing.assert_allclose([u2 @ w1 / 2.5, np.linalg.norm(u2)], [0.0, 1.0], atol=1e-10)


def test_labels_follow_the_formula_and_splits_share_the_tasks():
  data = ms.generate(0.5, {"train": 300, "test": 200}, seed=3, dim=7, num_sines=4, noise_var=0.0)
  rng = np.random.default_rng(3)  # the generator's draw order: weights, alphas, betas, then split inputs
  w1, w2 = ms.task_weights(0.5, rng, 7, 1.0)
  alphas, betas = rng.standard_normal(4), rng.standard_normal(4)
  for split in ("train", "test"):
    x = data[split]["features"].astype(np.float64)
    for w, key in ((w1, "y1"), (w2, "y2")):
      z = x @ w
      want = z + sum(np.sin(a * z + b) for a, b in zip(alphas, betas))
      np.testing.assert_allclose(data[split][key], want, rtol=1e-5, atol=1e-5)
  assert data["train"]["features"].shape == (300, 7) and data["test"]["y1"].shape == (200,)


def test_label_correlation_falls_with_the_task_correlation():
  corr = [ms.label_correlation(ms.generate(p, {"train": 4000})["train"]) for p in (1.0, 0.9, 0.5, 0.0)]
  assert corr[0] > 0.99 and all(a > b + 0.05 for a, b in zip(corr, corr[1:])) and abs(corr[-1]) < 0.1
  noisy = ms.generate(1.0, {"train": 4000})["train"]  # p = 1: the labels differ only by the noise
  np.testing.assert_allclose(np.std(noisy["y1"] - noisy["y2"]), math.sqrt(2 * ms.NOISE_VAR), rtol=0.05)


def test_names_registry_and_errors():
  assert ms.dataset_name(0.5) == "mmoe_synthetic_c050" and ms.dataset_name(-0.25) == "mmoe_synthetic_cm025"
  assert ms.dataset_name(1.0) == "mmoe_synthetic_c100"
  for p in ms.CORRELATIONS:
    assert registry.get_spec(ms.dataset_name(p)).tasks == ms.TASKS
  assert ms.make_spec(0.5) is ms.make_spec(0.5)  # one builder class per correlation
  with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
    ms.dataset_name(1.5)
  with pytest.raises(ValueError, match="more than two decimals"):
    ms.dataset_name(0.125)
  with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
    ms.task_weights(-1.01, np.random.default_rng(0))
  with pytest.raises(ValueError, match="split sizes >= 1"):
    ms.generate(0.5, {"train": 0})
  with pytest.raises(ValueError, match="reads no source files"):
    ms.make_spec(0.5).builder(data_dir="/tmp/unused", source="x.csv")._arrays()
