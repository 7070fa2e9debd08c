"""One plug-in style: registries find variants by name, by 'module:attr', by import-by-name, and name what
they know when asked for something else; the import direction train -> control never appears."""
import os
import subprocess
import sys

import pytest

from mtl.registry import Registry


def test_register_get_and_errors_name_the_known_entries():
  r = Registry("widget")
  r.register("a", 1)

  @r.register("b")
  def b():
    return 2
  assert r.get("a") == 1 and r.get("b") is b and "a" in r and "zzz" not in r
  with pytest.raises(ValueError, match=r"unknown widget 'zzz'; known: .*a, b"):
    r.get("zzz")
  with pytest.raises(ValueError, match="registered twice"):
    r.register("a", 3)
  r.register("a", 1)  # the same object again (a module imported twice) is fine
  with pytest.raises(ValueError, match="non-empty string"):
    r.get("")
  with pytest.raises(ValueError, match="without ':'"):
    r.register("x:y", 1)


def test_module_attr_and_family_names():
  r = Registry("widget")
  assert r.get("math:sqrt")(9.0) == 3.0
  with pytest.raises(ValueError, match="cannot import 'nope' from module 'math'"):
    r.get("math:nope")
  r.register("fam", "F", family=True)
  assert r.get("fam-64-8") == "F" and r.family_of("fam-64-8") == "fam"
  with pytest.raises(ValueError, match="unknown widget 'famx-1'"):
    r.get("famx-1")


def test_builtin_registries_find_every_kind_of_variant():
  from mtl.data import DATASETS
  from mtl.models.registry import ENCODERS, HEADS, MODELS
  from mtl.optim.registry import METHODS
  from mtl.tasks import TASK_KINDS
  from mtl.train.registry import TRAIN_STEPS
  assert {"standard", "sandwich", "nested_draft"} <= set(TRAIN_STEPS.names())
  assert {"multitask", "taskexpert", "lm"} <= set(MODELS.names())
  assert {"conv", "vit", "mlp"} <= set(ENCODERS.names()) and {"classification", "dense"} <= set(HEADS.names())
  assert {"classification", "semseg", "depth", "edges", "binary", "lm"} <= set(TASK_KINDS.names())
  assert {"multifashion", "yeast", "gcide_text", "mqar", "synthetic"} <= set(DATASETS.names())
  assert DATASETS.get("mqar-64-4-128") is DATASETS.get("mqar")
  assert {"equal", "mgda", "pcgrad"} <= set(METHODS.names())
  for registry, name in ((TRAIN_STEPS, "sandwhich"), (MODELS, "multitsak"), (TASK_KINDS, "segmentation")):
    with pytest.raises(ValueError, match=f"unknown .*'{name}'; known: "):
      registry.get(name)


def test_train_never_imports_control_or_the_draft_step():
  code = ("import sys, mtl.train.loop, mtl.train.step; "
          "bad = [m for m in sys.modules if m.startswith('mtl.control') or m in ('mtl.nested_draft', 'mtl.plugins')]; "
          "print(bad); assert not bad")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stdout + out.stderr
