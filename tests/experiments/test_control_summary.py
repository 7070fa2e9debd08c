"""experiments/control_summary.py: seed means, per-seed values kept, ablation rows, bad inputs named."""
import json
import math

import pytest

from experiments import control_summary


def _control_json(delta_ms, spearman_per_task, hv=0.5, chosen="enc=1"):
  full = 100.0
  return {
      "chosen": {"config": chosen}, "full_macs": full, "table": [],
      "fixed_width": [{"width": w, "delta_m": d, "fixed_workdir": f"w{w}", "macs_fraction": w * w}
                      for w, d in zip((1.0, 0.5), delta_ms)],
      "report": {"tasks": ["a", "b"], "hypervolume": {"a": hv, "b": hv / 2},
                 "budgets": [{"budget": 25.0, "runs": [], "rank_correlation": None},
                             {"budget": 50.0, "runs": [{"config": "x"}],
                              "rank_correlation": {"per_task": spearman_per_task,
                                                   "mean": float("nan")}}]},
  }


def test_means_over_seeds_and_keeps_layout():
  s0 = _control_json([-1.0, -3.0], [0.5, float("nan")])
  s1 = _control_json([-2.0, 1.0], [0.7, 0.9])
  out = control_summary.summarize({"0": s0, "1": s1})
  f1, f05 = out["fixed_width"]
  assert f1["width"] == 1.0 and f1["delta_m"] == pytest.approx(-1.5)
  assert f05["delta_m"] == pytest.approx(-1.0) and (f05["delta_m_min"], f05["delta_m_max"]) == (-3.0, 1.0)
  assert f1["delta_m_per_seed"] == {"0": -1.0, "1": -2.0}
  rc = out["report"]["budgets"][1]["rank_correlation"]
  # task b is undefined in seed 0: its average is seed 1's value alone.
  assert rc["per_task"] == pytest.approx([0.6, 0.9]) and rc["mean"] == pytest.approx(0.75)
  assert out["report"]["budgets"][0]["rank_correlation"] is None
  assert out["report"]["budgets"][1]["runs"] == [{"config": "x"}]     # the first seed's runs are kept
  assert out["seeds"]["1"]["fixed_width"][1]["delta_m"] == 1.0
  # inputs untouched
  assert s0["fixed_width"][0]["delta_m"] == -1.0


def test_ablation_rows_and_markdown():
  both = _control_json([-1.0, -2.0], [0.5, 0.7], hv=0.4)
  none = _control_json([-5.0, -6.0], [0.1, 0.3], hv=0.2)
  out = control_summary.summarize({"0": both}, {"both": both, "neither": none})
  assert out["ablation"]["neither"]["delta_m"] == {"1.0": -5.0, "0.5": -6.0}
  assert out["ablation"]["both"]["spearman"] == {"0.50": pytest.approx(math.nan, nan_ok=True)}
  text = control_summary.markdown(out)
  assert "| neither | -5.00% | -6.00% |" in text and "**-1.00%**" in text


def test_bad_inputs_are_named(tmp_path):
  s0 = _control_json([-1.0, -3.0], [0.5, 0.5])
  other = _control_json([-1.0], [0.5, 0.5])
  with pytest.raises(ValueError, match="seed 1: fixed-width widths"):
    control_summary.summarize({"0": s0, "1": other})
  with pytest.raises(ValueError, match="not an experiments.control"):
    control_summary.summarize({"0": {"report": {}}})
  with pytest.raises(ValueError, match="at least one seed"):
    control_summary.summarize({})
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="cannot read"):
    control_summary.main(["--seeds", f"0={bad}"])
  with pytest.raises(ValueError, match="must be NAME=PATH"):
    control_summary.main(["--seeds", "justapath.json"])


def test_main_writes_json(tmp_path):
  path = tmp_path / "s0.json"
  path.write_text(json.dumps(_control_json([-1.0, -3.0], [0.5, 0.5])))
  out = tmp_path / "out.json"
  control_summary.main(["--seeds", f"0={path}", "--json", str(out)])
  assert json.loads(out.read_text())["fixed_width"][0]["delta_m"] == -1.0
