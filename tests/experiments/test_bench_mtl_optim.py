import pytest

from experiments.bench_mtl_optim import per_dataset, summarise


def test_per_dataset_values():
  ds = ["yeast", "multifashion"]
  assert per_dataset(None, ds) == {"yeast": None, "multifashion": None}
  assert per_dataset("300", ds) == {"yeast": "300", "multifashion": "300"}
  assert per_dataset("yeast=0,1,2;multifashion=0", ds) == {"yeast": "0,1,2", "multifashion": "0"}
  assert per_dataset("multifashion=300", ds) == {"yeast": None, "multifashion": "300"}
  with pytest.raises(ValueError, match="cifar"):
    per_dataset("cifar=3", ds)


def test_summarise_relative_to_equal():
  runs = {"equal": [{"metrics": {"a": 0.8, "b": 0.5}, "higher_is_better": {"a": True, "b": True},
                     "step_time_s": 0.01}] * 2,
          "mgda": [{"metrics": {"a": 0.88, "b": 0.5}, "higher_is_better": {"a": True, "b": True},
                    "step_time_s": 0.03}, {"metrics": {"a": 0.72, "b": 0.6}, "higher_is_better":
                    {"a": True, "b": True}, "step_time_s": 0.01}],
          "bad": [{"error": "ValueError: x"}]}
  out = summarise(runs)
  assert out["mgda"]["metrics"] == pytest.approx({"a": 0.8, "b": 0.55})
  assert out["mgda"]["delta_m_vs_equal"] == pytest.approx(100 * (0 + 0.1) / 2)
  assert out["mgda"]["step_time_vs_equal"] == pytest.approx(2.0)
  assert out["bad"] == {"error": "ValueError: x"}
