"""Parameters and optimizer state are placed as the config's sharding rules say; FSDP trains like DP."""
import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from configs import common
from mtl import sharding
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop


def test_fsdp_rules_shard_params_and_adam_moments(monkeypatch):
  config = synthetic_config(2)
  config.mesh = {"fsdp": -1}
  common.apply_sharding_preset(config, "fsdp")
  exp = loop.build_experiment(config)
  flat = jax.tree_util.tree_flatten_with_path(exp.state)[0]
  checked = 0
  for path, leaf in flat:
    name = sharding.path_str(path)
    if not name.endswith("kernel"):
      continue
    spec = leaf.sharding.spec
    # Logical rules: the first named dimension (embed, then mlp) that divides by the 8 devices takes 'fsdp'.
    named = [d for d in (len(leaf.shape) - 2, len(leaf.shape) - 1) if leaf.shape[d] % 8 == 0]
    if named:
      assert spec[named[0]] == "fsdp" and list(spec).count("fsdp") == 1, (name, leaf.shape, spec)
      assert len(leaf.addressable_shards[0].data.flatten()) == leaf.size // 8
      checked += 1
  kinds = {sharding.path_str(p).split("/")[0] for p, l in flat if any(s == "fsdp" for s in l.sharding.spec)}
  assert {"params", "opt_state"} <= kinds and checked >= 4


def test_expert_rule_puts_experts_on_expert_axis():
  mesh = sharding.make_mesh({"expert": 4, "fsdp": 2})
  tree = {"params": {"moe": {"w1": np.zeros((8, 4, 6)), "b1": np.zeros((8, 6)), "router": np.zeros((4, 8))}}}
  sh = sharding.tree_shardings(tree, mesh, common.sharding_rules("expert_fsdp"))
  assert sh["params"]["moe"]["w1"].spec == P("expert", None, None)
  assert sh["params"]["moe"]["b1"].spec == P("expert", None)
  assert sh["params"]["moe"]["router"].spec == P(None, "fsdp")


def test_fsdp_training_matches_data_parallel(tmp_path, monkeypatch):
  dp = synthetic_config(3)
  fsdp = synthetic_config(3)
  fsdp.mesh = {"data": 2, "fsdp": 4}
  common.apply_sharding_preset(fsdp, "fsdp")
  a = loop.train_and_evaluate(dp, str(tmp_path / "dp"), progress=False)
  b = loop.train_and_evaluate(fsdp, str(tmp_path / "fsdp"), progress=False)
  for t in ("even", "odd"):
    np.testing.assert_allclose(a["test"][t]["loss"], b["test"][t]["loss"], rtol=1e-4)
