"""End to end on generated files in the real NYUDv2 / PASCAL-Context formats: the raw folders sit where the data
dir says (<data_dir>/downloads/manual/...), the datasets build, a few steps train through experiments.train (the
CLI, and the loop it calls) at tiny resolution, and the val split is evaluated with every task's metrics."""
import json
import math
import os
import subprocess
import sys

import jax
import ml_collections
import pytest

from configs import nyud_resnet, nyud_vit, pascal_resnet, pascal_vit
from mtl import sharding
from mtl.tasks import get_kind
from mtl.testing import dense_files
from mtl.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  dense_files.write_nyud(str(d / "downloads" / "manual" / "NYUDv2"), hw=(36, 48))
  dense_files.write_pascal_context(str(d / "downloads" / "manual" / "PASCALContext"), hw=(40, 36))
  return str(d)


def _check_metrics(test: dict, config) -> None:
  info_tasks = {"nyud": ("semseg", "depth", "normals", "edge"),
                "pascal_context": ("semseg", "human_parts", "saliency", "normals", "edge")}
  name = config.dataset.name.split("-")[0]
  assert tuple(test) == info_tasks[name]
  from mtl import data
  kinds = {t.name: t.kind for t in data.get_info(config.dataset.name).tasks}
  for task, metrics in test.items():
    assert set(get_kind(kinds[task]).METRICS) <= set(metrics), (task, sorted(metrics))
    assert all(math.isfinite(v) for v in metrics.values()), (task, metrics)


def test_nyud_vit_smoke_through_the_cli(data_dir, tmp_path):
  out = str(tmp_path / "result.json")
  cmd = [sys.executable, "-m", "experiments.train", "--config", "configs/nyud_vit.py:smoke=1",
         f"--config.dataset.data_dir={data_dir}", "--config.num_steps=3", f"--workdir={tmp_path / 'wd'}",
         f"--json={out}"]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user's run.
  env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(out))
  assert result["step"] == 3
  _check_metrics(result["test"], nyud_vit.get_config("smoke=1"))
  assert "normals" in proc.stdout and "ods_f" in proc.stdout  # the printed table.


@pytest.mark.parametrize("make", [lambda: pascal_resnet.get_config("smoke=1,depth=18,os=8")])
def test_pascal_resnet_smoke_trains_and_evaluates(data_dir, tmp_path, make):
  c = make()
  c.dataset.data_dir = data_dir
  c.num_steps = 2
  mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
  result = loop.train_and_evaluate(c, str(tmp_path / "wd"), mesh=mesh, progress=False)
  _check_metrics(result["test"], c)


@pytest.mark.parametrize("arg", ["", "smoke=1", "smoke=1,size=64x96,tasks=semseg+edge"])
def test_every_dense_config_validates(arg):
  for mod in (nyud_vit, pascal_vit, nyud_resnet, pascal_resnet):
    c = mod.get_config(arg)
    loop.validate_config(c)
    assert len(c.mtl.kwargs.weights) == len(c.dataset.tasks)
  c = nyud_resnet.get_config("control=1,smoke=1")
  assert c.control.enabled and tuple(c.model.encoder.widths) == (0.25, 0.5, 0.75, 1.0)
  with pytest.raises(ValueError, match="unknown config arg"):
    nyud_vit.get_config("depth=34")
  with pytest.raises(ValueError, match="unknown task"):
    pascal_vit.get_config("tasks=depth")
  assert isinstance(pascal_resnet.get_config("pretrained=/x.safetensors").model.pretrained, ml_collections.ConfigDict)
