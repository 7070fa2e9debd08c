"""experiments.control and experiments.evaluate on a tiny trained synthetic run."""
import json
import os

import ml_collections
import numpy as np
import pytest

from mtl.control import table as control
from mtl.train import baselines as evaluate
from mtl.control import search as search_lib
from mtl.control.widths import parse_config
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ctrl"))
  c = synthetic_config(2, every_steps=100)
  c.train_step = "sandwich"
  c.control = ml_collections.ConfigDict(dict(enabled=True, widths=(0.5, 1.0), num_random=1,
                                             cikd_weight=1.0))
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  loop.train_and_evaluate(c, workdir, progress=False)
  yield workdir


def test_measure_search_and_cache(trained):
  exp, state, step = loop.restore_experiment(trained)
  table = control.load_or_measure(trained, exp, state, step, num_configs=4, max_batches=2)
  assert len(table) == 4
  macs = sorted(m.macs for m in table)
  assert macs[0] < macs[-1]
  cached = json.load(open(os.path.join(trained, "control_table.json")))
  assert cached["step"] == 2 and len(cached["table"]) == 4
  again = control.load_or_measure(trained, exp, state, step, num_configs=4, max_batches=2)
  assert [m.to_json() for m in again] == [m.to_json() for m in table]
  chosen = search_lib.search(macs[0], [0.7, 0.3], table, ["even", "odd"])
  assert chosen.macs == macs[0]
  with pytest.raises(ValueError, match="below the cheapest"):
    search_lib.search(macs[0] - 1, [0.5, 0.5], table, ["even", "odd"])


def test_every_config_assembled_from_width_pairs_equals_direct_measurement(trained):
  exp, state, step = loop.restore_experiment(trained)
  table = control.measure_all_configs(exp, state, max_batches=2)
  assert len(table) == 2 ** 3 and len({m.config for m in table}) == 8  # every configuration
  direct = control.measure_table(exp, state, [m.config for m in table], max_batches=2)
  for a, b in zip(table, direct):
    assert a.config == b.config and a.macs == b.macs
    for t in a.metrics:
      np.testing.assert_allclose(a.metrics[t], b.metrics[t], rtol=1e-6, atol=1e-7)


def test_preference_parsing_errors():
  assert control.parse_preference(None, ["a", "b"]) == [1.0, 1.0]
  with pytest.raises(ValueError, match="has 3 weights but the run has 2 tasks"):
    control.parse_preference("0.1,0.2,0.7", ["a", "b"])
  with pytest.raises(ValueError, match="comma-separated numbers"):
    control.parse_preference("a,b", ["a", "b"])


def test_evaluate_with_json_baselines(trained, tmp_path):
  metrics, exp = evaluate.load_and_evaluate(trained, "test")
  base = tmp_path / "baselines.json"
  base.write_text(json.dumps({"even": 0.5, "odd": 0.5}))
  baselines = evaluate.read_baselines(str(base), "test")
  main = {t.name: metrics[t.name]["accuracy"] for t in exp.tasks}
  from mtl.evaluate import delta_m
  dm = delta_m(main, baselines, {"even": True, "odd": True})
  np.testing.assert_allclose(dm, 100 * np.mean([(main[t] - 0.5) / 0.5 for t in main]))
  with pytest.raises(ValueError, match="not task=WORKDIR"):
    evaluate.read_baselines("nonsense", "test")
  # --max_batches: the first batches only, the same numbers evaluate_split gives on them
  first, _ = evaluate.load_and_evaluate(trained, "test", max_batches=1)
  exp1, state1, _ = loop.restore_experiment(trained)
  want = loop.evaluate_split(exp1, state1, "test", max_batches=1)
  assert first == want and first != metrics
  with pytest.raises(ValueError, match="max_batches must be positive"):
    evaluate.load_and_evaluate(trained, "test", max_batches=0)


def test_compare_with_fixed_width_run(trained, tmp_path):
  from experiments import control as control_cli
  from mtl.evaluate import delta_m
  from mtl.nn.slimmable import scale_channels
  fixed = synthetic_config(2, every_steps=100)  # the same channels as the slimmable model at width 0.5
  fixed.model.encoder.stage_channels = tuple(scale_channels(c, 0.5, 8) for c in (8, 16))
  fixed.model.head.hidden_dim = scale_channels(16, 0.5, 8)
  loop.train_and_evaluate(fixed, str(tmp_path / "fixed"), progress=False)
  exp, state, _ = loop.restore_experiment(trained)
  runs = control_cli.parse_fixed_runs(f"0.5={tmp_path / 'fixed'}")
  (row,) = control_cli.compare_fixed_width(exp, state, runs)
  assert row["config"] == "enc=0.5,even=0.5,odd=0.5"
  assert row["macs"] == row["fixed_macs"] > 0  # same architecture, same compute
  fixed_test = json.load(open(tmp_path / "fixed" / "results.json"))["test"]
  assert row["fixed"] == {t: fixed_test[t]["accuracy"] for t in ("even", "odd")}
  np.testing.assert_allclose(row["delta_m"], delta_m(row["controllable"], row["fixed"], {"even": True, "odd": True}))
  with pytest.raises(ValueError, match="width in \\(0, 1\\]"):
    control_cli.parse_fixed_runs(f"2={tmp_path / 'fixed'}")
  with pytest.raises(ValueError, match="no results.json"):
    control_cli.parse_fixed_runs(f"0.5={tmp_path}")
  from mtl.control import latency
  with pytest.raises(ValueError, match="not trained with a control config"):
    latency.trained_model(str(tmp_path / "fixed"), num_configs=2)


def test_latency_of_trained_run(trained, tmp_path):
  from mtl.control import latency
  model, variables, configs, shape = latency.trained_model(trained, num_configs=3)
  table_path = os.path.join(trained, "control_table.json")
  if os.path.exists(table_path):  # another test measured the control table first: its configs are timed
    assert [c.key() for c in configs] == list(dict.fromkeys(r["config"] for r in json.load(open(table_path))["table"]))
  else:
    assert len(configs) == 3
  exp, state, _ = loop.restore_experiment(trained)
  assert shape == tuple(exp.info.input_shape)
  out = str(tmp_path / "lat.json")
  latency.main(["--workdir", trained, "--batch", "3", "--iters", "1", "--num_configs", "3", "--json", out])
  table = json.load(open(out))
  rows = {r["config"]: r for r in table["rows"]}
  assert set(rows) == {c.key() for c in configs} | {"enc=1,even=1,odd=1"}
  assert rows["enc=1,even=1,odd=1"]["macs_ratio"] == 1.0
  assert all(r["macs_ratio"] < 1.0 and r["median_s"] > 0 for k, r in rows.items() if k != "enc=1,even=1,odd=1")
  assert table["batch_size"] == 3 and table["source"] == f"workdir={trained}"


def test_control_cli_normalization_flag_reaches_search_and_report(trained, tmp_path):
  from absl import flags
  from experiments import control as control_cli
  out = {}
  for norm in ("reference", "range"):
    path = str(tmp_path / f"{norm}.json")
    flags.FLAGS(["control", f"--workdir={trained}", "--budget=0.7", "--preference=0.8,0.2", f"--normalization={norm}",
                 "--max_val_batches=2", "--report_budgets=0.6,1.0", "--preference_points=3", f"--json={path}"])
    try:
      control_cli.main([])
    finally:
      flags.FLAGS.unparse_flags()
    out[norm] = json.load(open(path))
    table = [search_lib.Measurement(parse_config(m["config"]), m["macs"], m["metrics"]) for m in out[norm]["table"]]
    names = out[norm]["report"]["tasks"]
    assert out[norm]["report"]["normalization"] == norm
    expect = search_lib.search(out[norm]["budget_macs"], (0.8, 0.2), table, names, normalization=norm)
    assert out[norm]["chosen"]["config"] == expect.config.key()
  with pytest.raises(flags.IllegalFlagValueError):
    flags.FLAGS(["control", "--normalization=minmax"])
  flags.FLAGS.unparse_flags()
