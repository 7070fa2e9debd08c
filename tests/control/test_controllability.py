import numpy as np
import pytest

from mtl.control import controllability as C

TASKS = ("a", "b")


def test_rank_correlation():
  pr = np.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
  perf = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
  assert C.rank_correlation(pr, perf) == {"per_task": [1.0, 1.0], "mean": 1.0}
  out = C.rank_correlation(pr, perf, higher_is_better=[False, True])
  assert out["per_task"] == [-1.0, 1.0] and out["mean"] == 0.0
  const = C.rank_correlation(pr, np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]))
  assert np.isnan(const["per_task"][1]) and const["mean"] == 1.0
  with pytest.raises(ValueError, match="P >= 2"):
    C.rank_correlation(pr[:1], perf[:1])


def test_preference_sweep():
  s = C.preference_sweep(2, 5)
  np.testing.assert_allclose(s.sum(1), 1.0)
  assert s.shape == (5, 2) and np.all(np.diff(s[:, 0]) > 0)
  s3 = C.preference_sweep(3, 6)
  assert s3.shape == (6, 3) and np.allclose(s3.sum(1), 1.0)


def test_report_and_plots(tmp_path, synthetic_table):
  table = synthetic_table
  report = C.controllability_report(table, TASKS, budgets=[50, 115, 140], preferences=C.preference_sweep(2, 3))
  assert "error" in report["budgets"][0]
  mid = report["budgets"][1]
  configs = [r["config"] for r in mid["runs"]]
  # Preference for b, equal, for a; at equal preference both one-sided allocations score the same.
  assert configs[0] == "enc=1,a=0.5,b=1" and configs[2] == "enc=1,a=1,b=0.5"
  assert configs[1] in ("enc=1,a=0.5,b=1", "enc=1,a=1,b=0.5")
  assert mid["rank_correlation"]["mean"] == pytest.approx(np.sqrt(3) / 2)  # one tie in each column
  p1 = C.plot_pareto(table, TASKS, str(tmp_path / "pareto.png"), chosen=mid["runs"])
  p2 = C.plot_budget_curves(report, str(tmp_path / "budget.png"))
  for p in (p1, p2):
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_pareto_front():
  pts = np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0], [0.9, 0.9], [2.0, 0.4]])
  assert C.pareto_front(pts).tolist() == [2, 0, 1]
  assert C.pareto_front(pts, maximize=[False, False]).tolist() == [2, 3, 4]
