import numpy as np
import pytest

from mtl.control import controllability as C
from mtl.control.search import search

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


@pytest.mark.parametrize("tasks,points,want", [(3, 5, 6), (3, 10, 10), (3, 11, 15), (4, 10, 10), (2, 10, 10)])
def test_preference_sweep_gives_at_least_the_points_asked_distinct_on_the_simplex(tasks, points, want):
  s = C.preference_sweep(tasks, points)
  assert s.shape == (want, tasks) and np.allclose(s.sum(1), 1.0) and np.all(s > 0)
  assert len({tuple(np.round(r, 9)) for r in s}) == want  # distinct (preference_sweep(3, 5) once returned 3)


def _hv_grid(x, y, hib, ref, n=801):
  """Plain reference: fraction of a fine grid over the reference box dominated by some point."""
  q = y if hib else -y
  rq = ref[1] if hib else -ref[1]
  top = max(q.max(), rq + 1e-9)
  gx, gq = np.meshgrid(np.linspace(x.min(), ref[0], n), np.linspace(rq, top, n))
  dom = np.zeros(gx.shape, bool)
  for xi, qi in zip(x, q):
    dom |= (gx >= xi) & (gq <= qi)
  return dom.mean() * (ref[0] - x.min()) * (top - rq)


@pytest.mark.parametrize("hib", [True, False])
def test_hypervolume_2d_against_grid_reference(hib):
  rng = np.random.default_rng(0)
  x, y = rng.uniform(0.05, 1.0, 30), rng.uniform(0.0, 1e-3, 30)  # badly scaled metric
  ref = (1.0, y.min() if hib else y.max())
  got = C.hypervolume_2d(x, y, hib, ref)
  np.testing.assert_allclose(got, _hv_grid(x, y, hib, ref), rtol=0.02)
  # Exact on a staircase: points (0.25, 1), (0.5, 2), (1, 3) with reference (1, 0): 0.75 + 0.5 = 1.25.
  assert C.hypervolume_2d(np.array([0.25, 0.5, 1.0]), np.array([1.0, 2.0, 3.0]), True, (1.0, 0.0)) == 1.25
  # Degenerate: duplicates and dominated points add nothing; a single point at the reference gives 0.
  assert C.hypervolume_2d(np.array([0.25, 0.25, 0.5]), np.array([1.0, 1.0, 0.5]), True, (1.0, 0.0)) == 0.75
  assert C.hypervolume_2d(np.array([1.0]), np.array([0.3])) == 0.0
  with pytest.raises(ValueError, match="finite"):
    C.hypervolume_2d(np.array([np.nan]), np.array([1.0]))


def test_task_front_plot(tmp_path, synthetic_table):
  report = C.controllability_report(synthetic_table, TASKS, budgets=[115, 140], preferences=C.preference_sweep(2, 10))
  assert report["budgets"][0]["distinct_preferences"] == 10 and set(report["hypervolume"]) == set(TASKS)
  runs = [r for b in report["budgets"] for r in b["runs"]]
  fixed = [{"width": 0.5, "macs_fraction": 0.5, "metrics": {"a": 0.6, "b": 0.6}}]
  p = C.plot_task_fronts(synthetic_table, TASKS, str(tmp_path / "fronts.png"), searched=runs, fixed=fixed)
  with open(p, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  offs = C._place_labels(np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0]]), (10, 8))
  assert len(set(offs)) == 3  # coincident points get distinct label positions


def test_report_passes_its_normalization_to_every_search(synthetic_table):
  prefs = C.preference_sweep(2, 10)
  for norm in ("reference", "range"):
    report = C.controllability_report(synthetic_table, TASKS, budgets=[115, 140], preferences=prefs,
                                      normalization=norm)
    assert report["normalization"] == norm
    for b in report["budgets"]:
      for run in b["runs"]:
        assert run["config"] == search(b["budget"], run["preference"], synthetic_table, TASKS,
                                       normalization=norm).config.key()
  with pytest.raises(ValueError, match="normalization"):
    C.controllability_report(synthetic_table, TASKS, budgets=[115], preferences=prefs, normalization="z")
