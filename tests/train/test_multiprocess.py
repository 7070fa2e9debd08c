"""2 local processes x 4 CPU devices (jax.distributed) train the same parameters as 1 process x 8 devices."""
import os
import sys

import jax
import numpy as np

from launch import local
from mtl.testing.train_synthetic import restored_params, synthetic_config
from mtl.train import loop


def test_two_processes_match_single_process(tmp_path, monkeypatch):
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  code = local.launch([sys.executable, "-m", "mtl.testing.train_synthetic", "--workdir", str(tmp_path / "multi"),
                       "--num_steps", "4"], num_processes=2, devices_per_process=4,
                      log_dir=str(tmp_path / "logs"), timeout_s=240, env=env)
  logs = "".join(open(tmp_path / "logs" / f"process_{i}.log").read() for i in range(2))
  assert code == 0, logs
  config = synthetic_config(4)
  loop.train_and_evaluate(config, str(tmp_path / "single"), progress=False)
  pm, sm = restored_params(str(tmp_path / "multi"))
  ps, ss = restored_params(str(tmp_path / "single"))
  assert sm == ss == 4
  for a, b in zip(jax.tree_util.tree_leaves(pm), jax.tree_util.tree_leaves(ps)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
