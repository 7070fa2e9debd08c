import pytest

from mtl.control.search import Measurement, normalize_preference, relative_performance, search
from mtl.control.widths import WidthConfig

TASKS = ("a", "b")


def test_preferred_task_gets_the_larger_decoder_and_encoder_maximizes_overall(synthetic_table):
  table = synthetic_table
  r = search(115, (0.8, 0.2), table, TASKS)
  assert r.config == WidthConfig.create(1.0, {"a": 1.0, "b": 0.5}) and r.macs == 115
  r = search(115, {"a": 0.2, "b": 0.8}, table, TASKS)
  assert r.config == WidthConfig.create(1.0, {"a": 0.5, "b": 1.0})
  # Hand check of the scores: reference is the full config (1.2, 1.2).
  assert r.overall == pytest.approx(((1.1 - 1.2) / 1.2 + 0.0) / 2)


def test_budget_extremes_and_errors(synthetic_table):
  table = synthetic_table
  assert search(1e9, (0.5, 0.5), table, TASKS).config == WidthConfig.create(1.0, {"a": 1.0, "b": 1.0})
  assert search(60, (0.5, 0.5), table, TASKS).config == WidthConfig.create(0.5, {"a": 0.5, "b": 0.5})
  with pytest.raises(ValueError, match="below the cheapest"):
    search(59, (0.5, 0.5), table, TASKS)
  with pytest.raises(ValueError, match="2 tasks"):
    search(100, (1.0,), table, TASKS)
  with pytest.raises(ValueError, match="non-negative"):
    normalize_preference((-1.0, 2.0), TASKS)


def test_lower_is_better_metrics(synthetic_table):
  table = [Measurement(m.config, m.macs, {"a": -m.metrics["a"], "b": m.metrics["b"]}) for m in synthetic_table]
  r = search(115, (0.8, 0.2), table, TASKS, higher_is_better={"a": False})
  assert r.config == WidthConfig.create(1.0, {"a": 1.0, "b": 0.5})
  rel = relative_performance(table, TASKS, {"a": False})
  assert rel.max() == pytest.approx(0.0)
