"""experiments.control and experiments.evaluate on a tiny trained synthetic run."""
import json
import os

import ml_collections
import numpy as np
import pytest

from mtl.control import table as control
from mtl.train import baselines as evaluate
from mtl.control import search as search_lib
from mtl.testing import synthetic_data
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  loop.data_lib = synthetic_data
  workdir = str(tmp_path_factory.mktemp("ctrl"))
  c = synthetic_config(2, every_steps=100)
  c.control = ml_collections.ConfigDict(dict(enabled=True, widths=(0.5, 1.0), num_random=1, pool_size=1,
                                             cikd_weight=1.0))
  c.model.encoder.widths = c.control.widths
  c.model.head.widths = c.control.widths
  loop.train_and_evaluate(c, workdir, progress=False)
  yield workdir
  import mtl.data
  loop.data_lib = mtl.data


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
