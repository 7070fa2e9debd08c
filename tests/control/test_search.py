import numpy as np
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


def _two_task_table(metric_a, metric_b):
  """Encoder fixed at 1; head widths (0.5, 0.75, 1) per task; MACs = 100 + 20 (w_a + w_b)."""
  widths = (0.5, 0.75, 1.0)
  return [Measurement(WidthConfig.create(1.0, {"a": wa, "b": wb}), int(100 + 20 * (wa + wb)),
                      {"a": metric_a[i], "b": metric_b[j]})
          for i, wa in enumerate(widths) for j, wb in enumerate(widths)]


def test_range_units_follow_the_preference_where_reference_units_let_the_volatile_task_outbid():
  # a's metric triples over its widths (0.1 -> 0.3), b's moves by 5% (0.90 -> 0.95); b is preferred (0.6).
  # Budget: w_a + w_b <= 1.5. The ordering rule allows (a=0.5, b=1) and (0.75, 0.75).
  table = _two_task_table((0.1, 0.2, 0.3), (0.90, 0.925, 0.95))
  # reference units: (0.5, 1) scores 0.4 * (0.1 - 0.3) / 0.3 = -0.267; (0.75, 0.75) scores
  # 0.4 * (-0.1 / 0.3) + 0.6 * (-0.025 / 0.95) = -0.149, so a's relative swing wins the budget.
  assert search(130, (0.4, 0.6), table, TASKS).config == WidthConfig.create(1.0, {"a": 0.75, "b": 0.75})
  # range units: (0.5, 1) scores 0.4 * -1 = -0.4, (0.75, 0.75) scores -0.5: the preferred task gets width 1.
  r = search(130, (0.4, 0.6), table, TASKS, normalization="range")
  assert r.config == WidthConfig.create(1.0, {"a": 0.5, "b": 1.0})
  assert r.weighted == pytest.approx(-0.4)


def test_range_units_against_a_float64_reference_on_badly_scaled_metrics():
  rng = np.random.default_rng(0)
  table = _two_task_table(1e-6 * rng.random(3), 1e3 * rng.random(3) + 5e3)
  rel = relative_performance(table, TASKS, {"b": False}, normalization="range")
  vals = np.array([[m.metrics["a"], -m.metrics["b"]] for m in table], np.float64)
  expect = (vals - vals.max(0)) / (vals.max(0) - vals.min(0))
  np.testing.assert_allclose(rel, expect, rtol=1e-12, atol=1e-12)
  assert rel.max(0) == pytest.approx([0.0, 0.0]) and rel.min(0) == pytest.approx([-1.0, -1.0])
  # a task constant over the table scores 0 everywhere (no division by zero)
  flat = _two_task_table((0.5, 0.5, 0.5), (1.0, 2.0, 3.0))
  assert np.all(relative_performance(flat, TASKS, normalization="range")[:, 0] == 0.0)


def test_range_search_is_invariant_to_a_positive_affine_change_of_each_metric():
  rng = np.random.default_rng(1)
  base = _two_task_table(rng.random(3), rng.random(3))
  moved = [Measurement(m.config, m.macs, {"a": 1e4 * m.metrics["a"] - 7.0, "b": 1e-5 * m.metrics["b"] + 3.0})
           for m in base]
  for budget in (140, 150, 160, 200):
    for pref in ((0.2, 0.8), (0.5, 0.5), (0.9, 0.1)):
      r0 = search(budget, pref, base, TASKS, normalization="range")
      r1 = search(budget, pref, moved, TASKS, normalization="range")
      assert r0.config == r1.config and r0.weighted == pytest.approx(r1.weighted)


def test_unknown_normalization_is_named():
  table = _two_task_table((0.1, 0.2, 0.3), (0.9, 0.925, 0.95))
  with pytest.raises(ValueError, match="normalization must be one of"):
    search(130, (0.5, 0.5), table, TASKS, normalization="minmax")
