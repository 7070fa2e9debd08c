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


def _searched_json(tmp_path, name, normalization="reference", drop_directions=False):
  """An experiments.control-like JSON whose report was searched from its own table (2 tasks, 3 widths each)."""
  import numpy as np
  from mtl.control import controllability as C
  from mtl.control.search import Measurement
  from mtl.control.widths import WidthConfig
  rng = np.random.default_rng(3)
  widths = (0.5, 0.75, 1.0)
  err = {w: 0.1 - 0.05 * w + 0.01 * rng.random() for w in widths}
  acc = {w: 0.3 * w + 0.02 * rng.random() for w in widths}
  table = [Measurement(WidthConfig.create(e, {"a": wa, "b": wb}), int(100 * e + 20 * (wa + wb)),
                       {"a": e * acc[wa], "b": err[wb] / e}) for e in widths for wa in widths for wb in widths]
  full = max(m.macs for m in table)
  report = C.controllability_report(table, ["a", "b"], [0.5 * full, 0.75 * full], C.preference_sweep(2, 10),
                                    {"b": False}, normalization)
  if drop_directions:
    del report["higher_is_better"]
  d = {"chosen": {"config": "enc=1,a=1,b=1"}, "full_macs": full, "table": [m.to_json() for m in table],
       "fixed_width": [{"width": 1.0, "delta_m": -1.0, "fixed_workdir": "w1", "macs_fraction": 1.0}],
       "report": report}
  path = tmp_path / f"{name}.json"
  path.write_text(json.dumps(d))
  return d, path


def test_recompute_report_reproduces_the_stored_sweep_and_switches_units(tmp_path):
  ref, _ = _searched_json(tmp_path, "ref")
  rng_, _ = _searched_json(tmp_path, "rng", normalization="range")
  again = control_summary.recompute_report(ref, "reference")
  assert json.dumps(again["report"], sort_keys=True) == json.dumps(ref["report"], sort_keys=True)
  switched = control_summary.recompute_report(ref, "range")
  assert json.dumps(switched["report"], sort_keys=True) == json.dumps(rng_["report"], sort_keys=True)
  assert switched["fixed_width"] == ref["fixed_width"] and switched["chosen"] == ref["chosen"]
  # the quality column is in reference units whatever the search's units: plain recomputation from the runs
  full = next(m["metrics"] for m in ref["table"] if m["config"] == "enc=1,a=1,b=1")
  for d in (ref, rng_):
    for b in d["report"]["budgets"]:
      plain = sum(((r["metrics"]["a"] - full["a"]) / abs(full["a"]) - (r["metrics"]["b"] - full["b"]) / abs(full["b"]))
                  / 2 for r in b["runs"]) / len(b["runs"])
      assert b["mean_relative_to_full"] == pytest.approx(plain, rel=1e-12)
  assert [b["runs"] for b in ref["report"]["budgets"]] != [b["runs"] for b in rng_["report"]["budgets"]]


def test_recompute_report_needs_task_directions(tmp_path):
  old, path = _searched_json(tmp_path, "old", drop_directions=True)
  with pytest.raises(ValueError, match="pass --lower_is_better"):
    control_summary.recompute_report(old, "range")
  with pytest.raises(ValueError, match="not tasks of this run"):
    control_summary.recompute_report(old, "range", ["depth"])
  ok = control_summary.recompute_report(old, "reference", ["b"])
  assert ok["report"]["budgets"][0]["runs"] == old["report"]["budgets"][0]["runs"]
  new, _ = _searched_json(tmp_path, "new")
  with pytest.raises(ValueError, match="the file says"):
    control_summary.recompute_report(new, "range", ["a"])
  out = control_summary.main(["--seeds", f"0={path}", "--normalization", "range", "--lower_is_better", "b"])
  assert out["report"]["normalization"] == "range" and "mean_relative_to_full" in out["report"]["budgets"][0]
  with pytest.raises(SystemExit):
    control_summary.main(["--seeds", f"0={path}", "--lower_is_better", "b"])
