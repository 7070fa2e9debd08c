"""delta-m and split evaluation helpers."""
import numpy as np
import pytest

from mtl import evaluate
from mtl.tasks.base import TaskSpec


def test_delta_m_by_hand():
  # task a (accuracy, up): 0.9 vs 0.8 -> +12.5%; task b (error, down): 0.3 vs 0.2 -> -50%.
  dm = evaluate.delta_m({"a": 0.9, "b": 0.3}, {"a": 0.8, "b": 0.2}, {"a": True, "b": False})
  np.testing.assert_allclose(dm, (12.5 - 50.0) / 2)


def test_delta_m_names_missing_baseline():
  with pytest.raises(ValueError, match=r"no single-task baseline for task\(s\) \['b'\]"):
    evaluate.delta_m({"a": 1.0, "b": 1.0}, {"a": 1.0}, {"a": True, "b": True})


def test_pad_batch_masks_padding_rows():
  tasks = (TaskSpec("a", "classification", 3), TaskSpec("b", "classification", 3))
  batch = {"image": np.ones((3, 2)), "a": np.array([1, 2, 0]), "b": np.array([0, 1, 1]),
           "mask/b": np.array([1.0, 0.0, 1.0], np.float32)}
  out = evaluate.pad_batch(batch, 5, tasks)
  assert out["image"].shape == (5, 2)
  np.testing.assert_array_equal(out["mask/a"], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out["mask/b"], [1, 0, 1, 0, 0])


def test_evaluate_stats_accumulates_exactly():
  tasks = (TaskSpec("a", "classification", 2),)
  from mtl.tasks import classification

  def stats_fn(b):
    return {"a": classification.stats(b["logits"], b["a"], b["mask/a"])}
  logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
  y = np.array([0, 0, 0])
  batches = [{"logits": logits[:2], "a": y[:2]}, {"logits": logits[2:], "a": y[2:]}]
  out = evaluate.evaluate_stats(stats_fn, batches, 2, tasks)
  np.testing.assert_allclose(out["a"]["accuracy"], 2 / 3)
