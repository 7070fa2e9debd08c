import pytest

from experiments.bench_experts import load_config, markdown, run_name, summarise, utilisation, write_markdown


def test_load_config_and_run_name():
  c = load_config("configs/moe_yeast.py:router=task")
  assert c.model.name == "taskexpert" and c.model.router == "task"
  assert run_name("configs/moe_yeast.py:router=task") == "moe_yeast_router-task"
  assert run_name("configs/yeast.py") == "yeast"
  with pytest.raises(ValueError, match="configs/<name>.py"):
    load_config("moe_yeast:router=task")


def test_utilisation_from_train_metrics():
  m = {"model/block0/moe/moe/expert_load_0": 0.5, "model/block0/moe/moe/expert_load_1": 0.25,
       "model/block0/moe/moe/expert_load_2": 0.25, "model/block1/moe/moe/expert_load_0": 0.4,
       "model/block1/moe/moe/expert_load_1": 0.6, "model/block0/moe/moe/drop_fraction": 0.02,
       "model/block1/moe/moe/drop_fraction": 0.0, "model/taskexpert/a/gate_memory": 0.3,
       "model/taskexpert/b/gate_memory": 0.5, "loss": 1.0}
  u = utilisation(m)
  assert u["max_min_load_ratio"] == pytest.approx(2.0)
  assert u["median_max_min_load_ratio"] == pytest.approx((2.0 + 1.5) / 2)
  assert u["moe_routers"] == 2 and u["drop_fraction"] == pytest.approx(0.01)
  assert u["memory_gate"] == pytest.approx(0.4)
  assert utilisation({"loss": 1.0}) == {}


def test_summarise_against_first_config_and_markdown(tmp_path):
  hib = {"a": True, "b": False}
  run = lambda a, b: {"metrics": {"a": a, "b": b}, "higher_is_better": hib, "steps_per_second": 10.0,
                      "params": 100, "utilisation": {}, "num_steps": 5}
  runs = {"base": [run(0.8, 1.0), run(0.8, 1.0)],
          "moe": [dict(run(0.88, 0.9), utilisation={"max_min_load_ratio": 1.5, "median_max_min_load_ratio": 1.2,
                                                    "drop_fraction": 0.01}), run(0.72, 0.9)],
          "bad": [{"error": "ValueError: no"}]}
  out = summarise(runs)
  assert out["base"]["delta_m"] == 0.0
  # a: mean 0.8 -> 0; b (lower is better): 1.0 -> 0.9 is +10%
  assert out["moe"]["delta_m"] == pytest.approx(5.0)
  assert out["moe"]["delta_m_seed_std"] == pytest.approx(5.0)  # per seed: +10/2+5 = 10 and -10/2+5 = 0
  assert out["bad"] == {"error": "ValueError: no"}
  table = markdown(out, "cmd")
  assert "| `moe` | 100 | " in table and "+5.00 ± 5.00" in table and "1.50 (1.20)" in table and "failed" in table
  doc = tmp_path / "doc.md"
  doc.write_text("# T\n\n<!-- experts:begin -->\nold\n<!-- experts:end -->\ntail\n")
  write_markdown(str(doc), table)
  text = doc.read_text()
  assert "old" not in text and text.endswith("<!-- experts:end -->\ntail\n") and "| `moe` |" in text
