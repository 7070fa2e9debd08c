"""Every config in configs/ builds, and its model initialises (shapes only) on its dataset's input and tasks."""
import glob
import importlib
import os

import jax
import jax.numpy as jnp
import pytest

from mtl.control.macs import count_macs
from mtl.control.widths import WidthConfig
from mtl.data import registry
from mtl.models.multitask import build_model

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "..",
                                                                             "configs", "*.py"))
                 if not os.path.basename(p).startswith(("__", "common")))


def _load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_model_initialises(name):
  c = _load(name)
  assert c.num_steps > 0 and c.batch_size > 0 and c.dataset.name
  if c.dataset.name not in registry.names():  # text datasets: the LM is covered by tests/models/test_lm.py
    return
  spec = registry.get_spec(c.dataset.name)
  tasks = tuple(t for t in spec.tasks if not c.dataset.tasks or t.name in c.dataset.tasks)
  model = build_model(c.model, tasks, tuple(spec.input_shape))
  x = jnp.zeros((2,) + tuple(spec.input_shape))
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x)[0])
  assert set(out) == {t.name for t in tasks}
  if c.get("control", {}).get("enabled", False):
    assert tuple(c.model.encoder.widths) == tuple(c.control.widths) == tuple(c.model.head.widths)


@pytest.mark.parametrize("fixed,control", [("fashion_scenes", "control_fashion_scenes"),
                                           ("cifar100_mtl", "control_cifar100_mtl")])
def test_fixed_width_configs_match_the_slimmed_controllable_model(fixed, control):
  spec = registry.get_spec(_load(fixed).dataset.name)
  names = [t.name for t in spec.tasks]
  slim = build_model(_load(control).model, spec.tasks, tuple(spec.input_shape))
  for w in (0.25, 0.5, 1.0):
    narrow = build_model(_load(fixed, f"width={w}").model, spec.tasks, tuple(spec.input_shape))
    got = count_macs(slim, WidthConfig.create(w, {n: w for n in names}), tuple(spec.input_shape))
    want = count_macs(narrow, WidthConfig.create(1.0, {n: 1.0 for n in names}), tuple(spec.input_shape))
    assert got == want, (w, got, want)


def test_bad_config_args_are_named():
  with pytest.raises(ValueError, match=r"width must be in \(0, 1\]"):
    _load("fashion_scenes", "width=1.5")
  with pytest.raises(ValueError, match="trains every width"):
    _load("control_fashion_scenes", "width=0.5")
  with pytest.raises(ValueError, match="trains every width"):
    _load("control_cifar100_mtl", "width=0.5")
  assert _load("fashion_scenes", "semseg+depth").dataset.tasks == ("semseg", "depth")
