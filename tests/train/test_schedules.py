"""The 'poly' learning-rate schedule of the dense multi-task papers: lr * (1 - t / T) ** 0.9."""
import ml_collections
import numpy as np
import pytest

from mtl.train.optimizer import learning_rate_schedule


def test_poly_schedule_matches_the_formula():
  cfg = ml_collections.ConfigDict({"learning_rate": 2e-5, "schedule": "poly", "warmup_steps": 0})
  s = learning_rate_schedule(cfg, 40000)
  for t in (0, 1, 20000, 39999, 40000):  # atol: float32 cancellation in 1 - t / T near T.
    np.testing.assert_allclose(float(s(t)), 2e-5 * (1 - t / 40000) ** 0.9, rtol=1e-5, atol=1e-6 * 2e-5)


def test_unknown_schedule_is_named():
  cfg = ml_collections.ConfigDict({"learning_rate": 1e-3, "schedule": "step"})
  with pytest.raises(ValueError, match="'poly'"):
    learning_rate_schedule(cfg, 10)
