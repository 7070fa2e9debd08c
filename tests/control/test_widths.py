import numpy as np
import pytest

from mtl.control import widths as W

WS = (0.25, 0.5, 1.0)
TASKS = ("left", "right")


def test_config_roundtrip_and_kwargs():
  c = W.WidthConfig.create(0.5, {"right": 0.25, "left": 1.0})
  assert c.heads == (("left", 1.0), ("right", 0.25))
  assert W.parse_config(c.key()) == c
  assert c.apply_kwargs() == {"encoder_width": 0.5, "head_widths": {"left": 1.0, "right": 0.25}}
  assert hash(c) == hash(W.parse_config("enc=0.5,left=1,right=0.25"))
  with pytest.raises(ValueError, match="cannot parse"):
    W.parse_config("left=1")
  with pytest.raises(ValueError, match="not one of the allowed"):
    W.WidthConfig.create(0.3, {"left": 1.0, "right": 1.0}).validate(WS, TASKS)
  with pytest.raises(ValueError, match="tasks are"):
    c.validate(WS, ("left",))


def test_all_configs_and_extremes():
  cs = list(W.all_configs(WS, TASKS))
  assert len(cs) == 27 and len(set(cs)) == 27
  assert W.largest(WS, TASKS) == W.WidthConfig.create(1.0, {"left": 1.0, "right": 1.0})
  assert W.smallest(WS, TASKS) == W.WidthConfig.create(0.25, {"left": 0.25, "right": 0.25})
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    W.largest((0.0, 1.0), TASKS)


def test_sandwich_rule_and_determinism():
  cs = W.sandwich_for_step(0, 7, WS, TASKS, num_random=3)
  assert cs[0] == W.largest(WS, TASKS) and cs[1] == W.smallest(WS, TASKS) and len(cs) == 5
  assert cs == W.sandwich_for_step(0, 7, WS, TASKS, num_random=3)
  for c in cs:
    c.validate(WS, TASKS)
  # Random configs cover every allowed value, uniformly enough.
  rng = np.random.default_rng(0)
  enc = [W.random_config(rng, WS, TASKS).encoder for _ in range(600)]
  counts = np.array([enc.count(w) for w in WS])
  assert counts.min() > 150


def test_sample_configs():
  cs = W.sample_configs(np.random.default_rng(0), WS, TASKS, 10)
  assert len(cs) == 10 == len(set(cs))
  assert cs[:3] == [W.largest(WS, TASKS), W.smallest(WS, TASKS), W.WidthConfig.create(0.5, {"left": 0.5, "right": 0.5})]
  assert len(W.sample_configs(np.random.default_rng(0), WS, TASKS, 100)) == 27
  with pytest.raises(ValueError, match="num must be"):
    W.sample_configs(np.random.default_rng(0), WS, TASKS, 1)
