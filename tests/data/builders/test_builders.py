"""Contents of each dataset built from the tiny generated sources, checked against the source arrays."""
import numpy as np
import pytest

from mtl import data
from mtl.data.builders import cifar100_mtl, yeast


def all_batches(name, split, built, **kw):
  n = data.get_info(name, built).splits[split]
  return next(data.make_loader(name, split, batch_size=n, shuffle=False, num_epochs=1, data_dir=built, **kw)), n


def find(rows, bank):
  """Index of each row of `rows` in `bank` (rows are flattened arrays); asserts a unique exact match."""
  rows, bank = rows.reshape(len(rows), -1), bank.reshape(len(bank), -1)
  hits = [np.nonzero((bank == r).all(1))[0] for r in rows]
  assert all(len(h) == 1 for h in hits)
  return np.array([h[0] for h in hits])


@pytest.mark.parametrize("name", ["multifashion", "multi_fashion_mnist"])
def test_overlaid_items_carry_their_labels(built, fashion, mnist_csv, name):
  f_train, f_test = fashion[1]["train"], fashion[1]["test"]
  left_bank = {"multifashion": (f_train, f_test), "multi_fashion_mnist": (mnist_csv[1], mnist_csv[1])}[name]
  used = {}
  for split in ("train", "validation", "test"):
    b, n = all_batches(name, split, built)
    img = np.round(b["image"][..., 0] * 255).astype(np.uint8)
    lx, ly = left_bank[0] if split != "test" else left_bank[1]
    rx, ry = f_train if split != "test" else f_test
    # Rows 0..7 show only the left item (its rows 0..7); rows 28..35 only the right one (its rows 20..27).
    li = find(img[:, :8, :28], lx[:, :8, :])
    ri = find(img[:, 28:, 8:], rx[:, 20:, :])
    np.testing.assert_array_equal(b["left"], ly[li])
    np.testing.assert_array_equal(b["right"], ry[ri])
    ref = np.maximum(np.pad(lx[li], ((0, 0), (0, 8), (0, 8))), np.pad(rx[ri], ((0, 0), (8, 0), (8, 0))))
    np.testing.assert_array_equal(img, ref)
    used[split] = (set(li.tolist()), set(ri.tolist()))
  # No item of the training images is shared between train and validation.
  assert not used["train"][0] & used["validation"][0] and not used["train"][1] & used["validation"][1]
  if name == "multifashion":
    assert used["train"][0] | used["validation"][0] == set(range(len(f_train[0])))


def test_builds_are_deterministic(tmp_path, fashion, built):
  data.prepare("fashion_scenes", str(tmp_path), source=fashion[0])
  for split in ("train", "test"):
    a, _ = all_batches("fashion_scenes", split, built)
    b, _ = all_batches("fashion_scenes", split, str(tmp_path))
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_yeast_split_standardised_labels(built, yeast_csv):
  x, y = yeast_csv[1]
  info = data.get_info("yeast", built)
  assert [t.name for t in info.tasks] == [f"class_{i}" for i in range(1, 15)]
  assert all(t.kind == "binary" and t.num_outputs == 1 for t in info.tasks)
  n_train, n_val, n_test = (info.splits[s] for s in ("train", "validation", "test"))
  assert n_train + n_val + n_test == len(x) and n_test == len(x) - round(len(x) * yeast.TRAIN_FRACTION)
  mean, std = x[:n_train].mean(0), x[:n_train].std(0)
  start = 0
  for split, n in (("train", n_train), ("validation", n_val), ("test", n_test)):
    b, _ = all_batches("yeast", split, built)
    np.testing.assert_allclose(b["features"], (x[start:start + n] - mean) / std, rtol=1e-4, atol=1e-4)
    for i in range(14):
      np.testing.assert_array_equal(b[f"class_{i + 1}"], y[start:start + n, i])
    start += n


def test_cifar100_mtl_masks_and_labels(built, cifar_dir):
  images, coarse, fine = cifar_dir[1]["train"]
  info = data.get_info("cifar100_mtl", built)
  assert len(info.tasks) == 20 and all(t.num_outputs == 5 for t in info.tasks)
  assert info.splits == {"train": 45, "validation": 5, "test": 20}
  b, n = all_batches("cifar100_mtl", "train", built)
  np.testing.assert_allclose(b["image"], images[:n] / 255.0, rtol=1e-6)
  masks = np.stack([b[t.mask_key] for t in info.tasks], 1)
  np.testing.assert_array_equal(masks.sum(1), np.ones(n))
  np.testing.assert_array_equal(masks.argmax(1), coarse[:n])
  for t_i, t in enumerate(info.tasks):
    on = coarse[:n] == t_i
    # label = position of the fine class among the sorted fine classes of this coarse class; 0 where unlabelled.
    want = [sorted(np.nonzero(cifar100_mtl.FINE_TO_COARSE == t_i)[0]).index(f) for f in fine[:n][on]]
    np.testing.assert_array_equal(b[t.name][on], want)
    assert np.all(b[t.name][~on] == 0)


def test_cifar100_inconsistent_labels_rejected(tmp_path):
  rec = np.zeros((1, 3074), np.uint8)
  rec[0, :2] = (5, 0)  # fine class 0 (apple) is in coarse class 4, not 5
  for split in ("train", "test"):
    (tmp_path / f"{split}.bin").write_bytes(rec.tobytes())
  with pytest.raises(ValueError, match="coarse class 4"):
    data.prepare("cifar100_mtl", str(tmp_path / "tfds"), source=str(tmp_path))


def test_fashion_scenes_targets_agree_with_the_image(built, fashion):
  info = data.get_info("fashion_scenes", built)
  assert [(t.name, t.kind, t.num_outputs) for t in info.tasks] == [
      ("semseg", "semseg", 11), ("depth", "depth", 1), ("edges", "edges", 1)]
  b, n = all_batches("fashion_scenes", "train", built)
  img = b["image"][..., 0]
  fg = b["semseg"] > 0
  np.testing.assert_array_equal(img > 0, fg)  # items are painted exactly where their pixels exceed the threshold
  assert np.all(b["depth"][~fg] == 1.0) and np.all((b["depth"][fg] > 0.05) & (b["depth"][fg] < 0.95))
  # Farther items are dimmer: image <= (1 - 0.5 * depth) on foreground pixels.
  assert np.all(img[fg] <= 1.0 - 0.5 * b["depth"][fg] + 0.5 / 255 + 1e-6)  # uint8 rounding
  labels = set(fashion[1]["train"][1].tolist())
  assert set(np.unique(b["semseg"][fg]).tolist()) <= {c + 1 for c in labels}
  assert b["edges"][fg].any() and not b["edges"][~fg & (np.roll(~fg, 1, 1) & np.roll(~fg, -1, 1) &
                                                         np.roll(~fg, 1, 2) & np.roll(~fg, -1, 2))].any()
