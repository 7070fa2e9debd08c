"""Loader semantics on the tiny builds: shapes, determinism, epochs, sharding, resume, errors."""
import json
import os

import numpy as np
import pytest

from mtl import data
from mtl.data import registry


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_get_info_names_and_unknown(built, tmp_path):
  assert set(data.names()) == {"multifashion", "multi_fashion_mnist", "yeast", "cifar100_mtl", "fashion_scenes",
                                "nyud", "pascal_context", "mmoe_synthetic_c000", "mmoe_synthetic_c050",
                                "mmoe_synthetic_c070", "mmoe_synthetic_c080", "mmoe_synthetic_c090",
                                "mmoe_synthetic_c100", "mmoe_synthetic_c050_y2x10", "fashion_scenes32",
                                "fashion_scenes16"}
  info = data.get_info("multifashion", str(tmp_path))
  assert info.input_shape == (36, 36, 1) and [t.name for t in info.tasks] == ["left", "right"]
  assert info.splits == {"train": 54000, "validation": 6000, "test": 10000}  # real sizes when not built
  assert data.get_info("multifashion", built).splits == {"train": 54, "validation": 6, "test": 24}
  with pytest.raises(ValueError, match="unknown dataset 'mnist'; known: .*multifashion"):
    data.get_info("mnist")


@pytest.mark.parametrize("name", ["multifashion", "multi_fashion_mnist", "yeast", "cifar100_mtl", "fashion_scenes"])
def test_batch_shapes_match_info(built, name):
  info = data.get_info(name, built)
  b = next(data.make_loader(name, "train", batch_size=4, data_dir=built))
  assert b[info.input_key].shape == (4,) + info.input_shape and b[info.input_key].dtype == np.float32
  if info.input_key == "image":
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
  dense = {"semseg": np.int32, "depth": np.float32, "edges": np.int32}
  for t in info.tasks:
    want = (4,) + (info.input_shape[:2] if t.kind in dense else ())
    assert b[t.target_key].shape == want, t.name
    assert b[t.target_key].dtype == dense.get(t.kind, np.int32)
  masks = [k for k in b if k.startswith("mask/")]
  assert (name == "cifar100_mtl") == bool(masks)


def test_same_seed_same_batches_other_seed_differs(built):
  kw = dict(batch_size=5, data_dir=built)
  a = take(data.make_loader("multifashion", "train", seed=3, **kw), 4)
  b = take(data.make_loader("multifashion", "train", seed=3, **kw), 4)
  c = take(data.make_loader("multifashion", "train", seed=4, **kw), 4)
  assert_batches_equal(a, b)
  assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))


def _ids(batches):
  # Yeast rows are identified by their (standardised, distinct) first feature.
  return np.concatenate([b["features"][:, 0] for b in batches])


def test_epochs_cover_every_example_once(built):
  n = data.get_info("yeast", built).splits["train"]
  ordered = _ids(list(data.make_loader("yeast", "train", batch_size=n, shuffle=False, num_epochs=1,
                                       data_dir=built)))
  it = data.make_loader("yeast", "train", batch_size=4, seed=1, num_epochs=2, drop_remainder=False, data_dir=built)
  assert it.num_batches == -(-2 * n // 4)
  got = _ids(list(it))
  assert len(got) == 2 * n
  np.testing.assert_array_equal(np.sort(got[:n]), np.sort(ordered))  # epoch 1 is a permutation
  np.testing.assert_array_equal(np.sort(got[n:]), np.sort(ordered))
  assert not np.array_equal(got[:n], got[n:])  # reshuffled each epoch
  dropped = list(data.make_loader("yeast", "train", batch_size=4, num_epochs=1, data_dir=built))
  assert len(dropped) == n // 4 and all(len(b["features"]) == 4 for b in dropped)


def test_shards_are_disjoint_rows_of_the_global_batch(built):
  kw = dict(seed=7, data_dir=built, num_epochs=1, drop_remainder=False)
  whole = list(data.make_loader("yeast", "train", batch_size=6, **kw))
  parts = [list(data.make_loader("yeast", "train", batch_size=3, shard_index=i, shard_count=2, **kw))
           for i in range(2)]
  assert len(parts[0]) == len(parts[1]) == len(whole)  # every host runs the same number of steps
  for w, p0, p1 in zip(whole, *parts):
    for k in w:
      np.testing.assert_array_equal(np.concatenate([p0[k], p1[k]]), w[k])
  ids0, ids1 = _ids(parts[0]), _ids(parts[1])
  assert not set(ids0.tolist()) & set(ids1.tolist())
  # 23 rows in global batches of 4 over 4 hosts: the last global batch has 3 rows, host 3 gets an empty batch.
  last = list(data.make_loader("yeast", "train", batch_size=1, shard_index=3, shard_count=4, **kw))[-1]
  assert last["features"].shape == (0, 103) and last["class_1"].shape == (0,)
  with pytest.raises(ValueError, match="shard_index"):
    data.make_loader("yeast", "train", batch_size=3, shard_index=2, shard_count=2, data_dir=built)


def test_state_resume_is_exact(built):
  it = data.make_loader("fashion_scenes", "train", batch_size=2, seed=5, data_dir=built)
  take(it, 3)
  state = json.loads(json.dumps(it.get_state()))  # checkpoints store it as JSON
  after = take(it, 4)
  fresh = data.make_loader("fashion_scenes", "train", batch_size=2, seed=5, data_dir=built)
  fresh.set_state(state)
  assert_batches_equal(take(fresh, 4), after)


def test_worker_processes_give_the_same_batches_and_states(built):
  kw = dict(batch_size=4, seed=2, data_dir=built)
  plain = take(data.make_loader("multifashion", "train", **kw), 4)
  it = data.make_loader("multifashion", "train", worker_count=1, **kw)
  first = take(it, 2)
  state = it.get_state()
  it.close()
  assert state == {"next_batch": 2}
  assert_batches_equal(first, plain[:2])
  resumed = data.make_loader("multifashion", "train", **kw)  # a state from a worker loader resumes a plain one
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 2), plain[2:])
  with pytest.raises(ValueError, match="bad loader state"):
    resumed.set_state({"next_index": 3})


def test_task_selection(built):
  b = next(data.make_loader("cifar100_mtl", "test", batch_size=4, data_dir=built, tasks=("fish", "people")))
  assert sorted(b) == ["fish", "image", "mask/fish", "mask/people", "people"]
  with pytest.raises(ValueError, match="unknown task"):
    data.make_loader("multifashion", "train", batch_size=4, data_dir=built, tasks=("middle",))


@pytest.mark.parametrize("kwargs,match", [
    (dict(split="valid"), "no split"), (dict(batch_size=0), "batch_size"), (dict(batch_size=1000), "fewer"),
    (dict(num_epochs=0), "num_epochs"), (dict(seed=-1), "seed")])
def test_bad_arguments(built, kwargs, match):
  args = dict(split="train", batch_size=4, data_dir=built) | kwargs
  split = args.pop("split")
  with pytest.raises(ValueError, match=match):
    data.make_loader("yeast", split, **args)


def test_prepare_is_idempotent_and_never_takes_partial_builds(built, tmp_path, fashion, monkeypatch):
  mtime = os.path.getmtime(os.path.join(built, "mtl_yeast", "1.0.0", "dataset_info.json"))
  data.prepare("yeast", built)  # already built: no-op
  assert os.path.getmtime(os.path.join(built, "mtl_yeast", "1.0.0", "dataset_info.json")) == mtime
  d = str(tmp_path)
  # A build that fails half-way (test images present, train missing) leaves nothing that counts as built.
  broken = tmp_path / "src"
  broken.mkdir()
  for f in os.listdir(fashion[0]):
    if f.startswith("t10k"):
      (broken / f).write_bytes(open(os.path.join(fashion[0], f), "rb").read())
  with pytest.raises(data.MissingDataError, match="dataset-fashion-mnist"):
    data.prepare("multifashion", d, source=str(broken))
  assert not data.is_prepared("multifashion", d)
  os.makedirs(os.path.join(d, "mtl_multifashion", "incomplete.XYZ_1.0.0"))
  assert not data.is_prepared("multifashion", d)
  monkeypatch.setenv("MTL_DATA_DIR", d)
  monkeypatch.setenv("MTL_FASHION_MNIST_DIR", str(broken))
  with pytest.raises(data.MissingDataError):  # make_loader builds on demand, from $MTL_DATA_DIR
    data.make_loader("multifashion", "test", batch_size=2)
  assert registry.resolve_data_dir(None) == d
