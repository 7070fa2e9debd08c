"""Every config in configs/ builds, passes the loop's config validation, and its model initialises (shapes only)
on its dataset's input and tasks; the controllable dense and CIFAR100-MTL models at several width configs."""
import glob
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.control import widths as widths_lib
from mtl.control.macs import count_macs
from mtl.control.widths import WidthConfig
from mtl.data import registry
from mtl.models.heads import head_name
from mtl.models.multitask import build_model
from mtl.tasks.base import select_tasks
from mtl.train.loop import validate_config

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "..",
                                                                             "configs", "*.py"))
                 if not os.path.basename(p).startswith(("__", "common")))


def _load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_model_initialises(name):
  c = _load(name)
  validate_config(c)
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


@pytest.mark.parametrize("fixed,control,extra", [("fashion_scenes", "control_fashion_scenes", ""),
                                                 ("cifar100_mtl", "control_cifar100_mtl", ""),
                                                 ("multifashion", "control_multifashion", ",hidden=64")])
def test_fixed_width_configs_match_the_slimmed_controllable_model(fixed, control, extra):
  spec = registry.get_spec(_load(fixed).dataset.name)
  names = [t.name for t in spec.tasks]
  slim = build_model(_load(control).model, spec.tasks, tuple(spec.input_shape))
  for w in (0.25, 0.5, 1.0):
    narrow = build_model(_load(fixed, f"width={w}{extra}").model, spec.tasks, tuple(spec.input_shape))
    got = count_macs(slim, WidthConfig.create(w, {n: w for n in names}), tuple(spec.input_shape))
    want = count_macs(narrow, WidthConfig.create(1.0, {n: 1.0 for n in names}), tuple(spec.input_shape))
    assert got == want, (w, got, want)


@pytest.mark.parametrize("name,real", [("control_fashion_scenes", True), ("control_cifar100_mtl", False)])
def test_forward_pass_at_every_kind_of_width_config(name, real):
  """The model of a CPU-sized run of the controllable config at full width (the architecture of the fixed-width
  config), at the smallest configuration and at one with mixed encoder / head widths: a real forward pass of one
  example for the dense heads, shapes only for the 20 CIFAR heads (kept fast)."""
  c = _load(name, "steps=2,batch=2")
  assert (c.num_steps, c.batch_size) == (2, 2)
  spec = registry.get_spec(c.dataset.name)
  names = [t.name for t in spec.tasks]
  model = build_model(c.model, spec.tasks, tuple(spec.input_shape))
  x = jnp.asarray(np.random.default_rng(0).random((1,) + tuple(spec.input_shape)), jnp.float32)
  configs = [widths_lib.largest(c.control.widths, names), widths_lib.smallest(c.control.widths, names),
             WidthConfig.create(0.5, {n: (0.25, 1.0)[i % 2] for i, n in enumerate(names)})]
  run = (lambda f, *a: f(*a)) if real else jax.eval_shape
  variables = run(model.init, jax.random.PRNGKey(0), x)
  for cfg in configs:
    out = run(lambda v, x, kw=cfg.apply_kwargs(): model.apply(v, x, **kw), variables, x)
    for t in spec.tasks:
      want = (1,) + (tuple(spec.input_shape[:2]) if head_name(t, {}) == "dense" else ()) + (t.num_outputs,)
      assert out[t.name].shape == want, (cfg.key(), t.name, out[t.name].shape)
      assert not real or bool(jnp.all(jnp.isfinite(out[t.name]))), (cfg.key(), t.name)


def test_bad_config_args_are_named():
  with pytest.raises(ValueError, match=r"width must be in \(0, 1\]"):
    _load("fashion_scenes", "width=1.5")
  with pytest.raises(ValueError, match="trains every width"):
    _load("control_fashion_scenes", "width=0.5")
  with pytest.raises(ValueError, match="trains every width"):
    _load("control_cifar100_mtl", "width=0.5")
  with pytest.raises(ValueError, match=r"width must be in \(0, 1\]"):
    _load("cifar100_mtl", "width=0")
  for name in ("fashion_scenes", "control_fashion_scenes", "cifar100_mtl", "control_cifar100_mtl"):
    with pytest.raises(ValueError, match=r"unknown config arg 'stpes' in 'stpes=20'; known: batch, .*steps"):
      _load(name, "stpes=20")
  with pytest.raises(ValueError, match="trains every width"):
    _load("control_multifashion", "width=0.5")
  with pytest.raises(ValueError, match=r"width must be in \(0, 1\]"):
    _load("multifashion", "width=2")
  with pytest.raises(ValueError, match="unknown config arg 'hiden'"):
    _load("control_multifashion", "hiden=3")
  c = _load("control_multifashion", "left,steps=7,seed=3,distill=0")
  assert (c.dataset.tasks, c.num_steps, c.seed, c.model.head.hidden_dim) == (("left",), 7, 3, 64)
  assert (c.control.output_distill_weight, c.control.cikd_weight) == (0.0, 1.0)
  assert _load("fashion_scenes", "semseg+depth").dataset.tasks == ("semseg", "depth")
  with pytest.raises(ValueError, match="unknown task name"):  # raised when the loop selects the tasks
    select_tasks(registry.get_spec("fashion_scenes").tasks, _load("fashion_scenes", "seg").dataset.tasks)


def test_mqar_lightning_feature_map_args():
  c = _load("mqar", "mixer=lightning,qk=none,lrpe=0")
  assert c.model.lm.lightning_qk_activation == "none" and c.model.lm.lightning_lrpe is False
  assert "lightning_lrpe" not in _load("mqar", "mixer=lightning").model.lm      # the TransNormer default
  with pytest.raises(ValueError, match="options of mixer=lightning, not 'softmax'"):
    _load("mqar", "mixer=softmax,qk=none")
  with pytest.raises(ValueError, match="lrpe must be 0 or 1"):
    _load("mqar", "mixer=lightning,lrpe=2")
