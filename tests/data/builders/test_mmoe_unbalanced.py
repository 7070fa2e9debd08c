"""The unbalanced MMoE pair: y2 is exactly k times the balanced dataset's y2 (so its MSE is ~k^2 times y1's), the
rest unchanged; names, registry, config, and bad scales raise."""
import importlib

import numpy as np
import pytest

from mtl.data import registry
from mtl.data.builders import mmoe_synthetic as ms
from mtl.data.builders import mmoe_unbalanced as mu

SIZES = {"train": 3000, "test": 500}


def test_y2_is_scaled_and_everything_else_is_the_balanced_data():
  bal = ms.generate(0.5, SIZES)
  unb = mu.generate(0.5, 10, SIZES)
  for split, n in SIZES.items():
    assert unb[split]["features"].shape == (n, ms.DIM) and unb[split]["features"].dtype == np.float32
    assert unb[split]["y1"].shape == unb[split]["y2"].shape == (n,) and unb[split]["y2"].dtype == np.float32
    np.testing.assert_array_equal(unb[split]["features"], bal[split]["features"])
    np.testing.assert_array_equal(unb[split]["y1"], bal[split]["y1"])
    np.testing.assert_allclose(unb[split]["y2"], 10.0 * bal[split]["y2"].astype(np.float64), rtol=1e-6)
  # the loss of a constant (mean) predictor, i.e. each task's variance: about 100x apart
  train = unb["train"]
  ratio = np.var(train["y2"].astype(np.float64)) / np.var(train["y1"].astype(np.float64))
  bal_ratio = np.var(bal["train"]["y2"].astype(np.float64)) / np.var(bal["train"]["y1"].astype(np.float64))
  np.testing.assert_allclose(ratio, 100.0 * bal_ratio, rtol=1e-5)
  assert 50.0 < ratio < 200.0, ratio
  # the collate hands both targets on unchanged (the scale is in the data, not in the loss)
  recs = {k: v[:4] for k, v in train.items()}
  out = mu.make_spec(0.5, 10).collate(recs, ms.TASKS)
  np.testing.assert_array_equal(out[ms.TASKS[1].target_key], recs["y2"])


def test_names_and_registry():
  name = mu.dataset_name(0.5, 10)
  assert name == "mmoe_synthetic_c050_y2x10" and name in registry.names()
  spec = registry.get_spec(name)
  assert spec.tasks == ms.TASKS and spec.input_shape == (ms.DIM,) and spec.splits == ms.SPLITS
  assert spec.builder.name == "mtl_mmoe_synthetic_c050_y2x10"
  assert mu.make_spec(0.5, 10) is mu.make_spec(0.5, 10)
  assert mu.dataset_name(-0.5, 3) == "mmoe_synthetic_cm050_y2x3"
  with pytest.raises(ValueError, match="reads no source files"):
    mu.make_spec(0.5, 10).builder(data_dir="/tmp/unused", source="x.csv")._arrays()


@pytest.mark.parametrize("bad", [1, 0, -10, 2.5, True, "10", float("nan"), None])
def test_bad_scales_raise(bad):
  with pytest.raises(ValueError, match="y2_scale must be an integer >= 2"):
    mu.check_scale(bad)
  with pytest.raises(ValueError, match="y2_scale must be an integer >= 2"):
    mu.generate(0.5, bad, {"train": 2})
  with pytest.raises(ValueError, match="y2_scale must be an integer >= 2"):
    mu.dataset_name(0.5, bad)


def test_config():
  cfg = importlib.import_module("configs.mmoe_unbalanced")
  c = cfg.get_config()
  assert c.dataset.name == "mmoe_synthetic_c050_y2x10" and c.num_steps == 300
  assert cfg.get_config("steps=40").num_steps == 40
  with pytest.raises(ValueError, match="y2_scale must be an integer >= 2"):
    cfg.get_config("y2_scale=1")  # no effect: the balanced data is mmoe_synthetic / towers_synthetic
  with pytest.raises(ValueError, match="has no registered dataset"):
    cfg.get_config("y2_scale=20")
  with pytest.raises(ValueError, match="has no registered dataset"):
    cfg.get_config("correlation=0.9")
  with pytest.raises(ValueError, match="steps must be >= 1"):
    cfg.get_config("steps=0")
  with pytest.raises(ValueError):
    cfg.get_config("y2_scale=2.5")  # typed arg: not an int
