"""Mesh construction and rule-based shardings."""
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mtl import sharding


def test_make_mesh_fills_free_axis():
  mesh = sharding.make_mesh({"data": -1, "fsdp": 2})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1, "expert": 1}
  assert sharding.data_parallel_size(mesh) == 8


def test_expert_axis_also_splits_the_batch():
  mesh = sharding.make_mesh({"data": 2, "expert": 4})
  assert sharding.data_parallel_size(mesh) == 8
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp", "expert"))


@pytest.mark.parametrize("sizes,match", [({"data": 3}, "needs 3 devices"), ({"model": 2}, "unknown mesh axes"),
                                         ({"data": -1, "fsdp": -1}, "at most one"), ({"data": 0}, "positive")])
def test_make_mesh_errors(sizes, match):
  with pytest.raises(ValueError, match=match):
    sharding.make_mesh(sizes)


def test_rules_shard_largest_divisible_dim():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  tree = {"params": {"dense": {"kernel": np.zeros((6, 16)), "bias": np.zeros((16,))}, "odd": np.zeros((3, 5))}}
  sh = sharding.tree_shardings(tree, mesh, [(r"params/dense/kernel", "fsdp"), (r"params/odd", "fsdp")])
  assert sh["params"]["dense"]["kernel"].spec == P(None, "fsdp")
  assert sh["params"]["dense"]["bias"].spec == P()
  assert sh["params"]["odd"].spec == P()


def test_shard_batch_splits_rows_over_devices():
  mesh = sharding.make_mesh({"data": -1})
  batch = sharding.shard_batch({"x": np.arange(16).reshape(8, 2)}, mesh)
  assert len(batch["x"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(16).reshape(8, 2))
  with pytest.raises(ValueError, match="not divisible"):
    sharding.shard_batch({"x": np.zeros((6, 2))}, mesh)
