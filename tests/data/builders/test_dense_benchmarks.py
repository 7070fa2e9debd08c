"""NYUDv2 / PASCAL-Context multi-task builders on files written in the real formats; the augmentation's geometry;
errors for missing / malformed folders; CIFAR-100 from the python-pickle archive."""
import os
import pickle

import numpy as np
import pytest

from mtl import data
from mtl.data import dense_io, sources
from mtl.data.builders import cifar100_mtl, pascal_context
from mtl.data.errors import MissingDataError
from mtl.testing import dense_files


@pytest.fixture(scope="module")
def dense_built(tmp_path_factory):
  root = tmp_path_factory.mktemp("dense")
  ny, pc, tfds_dir = str(root / "NYUDv2"), str(root / "PASCALContext"), str(root / "tfds")
  ids = {"nyud": dense_files.write_nyud(ny), "pascal_context": dense_files.write_pascal_context(pc)}
  data.prepare("nyud", tfds_dir, source=ny)
  data.prepare("pascal_context", tfds_dir, source=pc)
  return tfds_dir, ny, pc, ids


def _all(name, split, d, **kw):
  n = data.get_info(name.split("-")[0], d).splits[split]
  return next(data.make_loader(name, split, batch_size=n, shuffle=False, num_epochs=1, data_dir=d, **kw))


def test_nyud_eval_batches_match_the_files(dense_built):
  d, root, _, ids = dense_built
  info = data.get_info("nyud", d)
  assert info.splits == {"train": 4, "val": 3}
  assert [(t.name, t.kind, t.num_outputs) for t in info.tasks] == [
      ("semseg", "semseg", 40), ("depth", "depth", 1), ("normals", "normals", 3), ("edge", "boundary_nyud", 1)]
  b = _all("nyud-24x32", "val", d)  # the files' own size: no resizing, no padding.
  from PIL import Image
  for k, i in enumerate(ids["nyud"]["val"]):
    img = np.asarray(Image.open(os.path.join(root, "images", f"{i}.png")))
    np.testing.assert_allclose(b["image"][k], img / 255.0, atol=1e-6)
    seg = np.asarray(Image.open(os.path.join(root, "segmentation", f"{i}.png"))).astype(np.int32) - 1
    np.testing.assert_array_equal(b["semseg"][k], seg)  # 0 in the file -> -1 (ignored).
    np.testing.assert_array_equal(b["depth"][k], np.load(os.path.join(root, "depth", f"{i}.npy")))
    nrm = np.asarray(Image.open(os.path.join(root, "normals", f"{i}.png"))) * (2 / 255) - 1
    np.testing.assert_allclose(b["normals"][k], nrm, atol=1e-6)
  assert (b["semseg"][:, 0] == -1).all() and set(np.unique(b["edge"])) == {0, 1}


def test_nyud_eval_fits_and_pads_with_ignore(dense_built):
  d = dense_built[0]
  b = _all("nyud-16x32", "val", d)  # 24x32 -> 16x21 (aspect kept), padded on the right.
  assert b["image"].shape == (3, 16, 32, 3)
  assert (b["semseg"][:, :, 22:] == -1).all() and (b["depth"][:, :, 22:] == -1).all()
  assert (b["normals"][:, :, 22:] == 0).all() and (b["edge"][:, :, 22:] == -1).all()
  assert (b["image"][:, :, 22:] == 0).all()


def test_training_augmentation_is_seeded_and_differs_per_epoch(dense_built):
  d = dense_built[0]

  def first_batches(seed, k=3):
    it = data.make_loader("nyud-12x16", "train", batch_size=4, seed=seed, data_dir=d)
    return [next(it) for _ in range(k)]
  a, b, c = first_batches(0), first_batches(0), first_batches(1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])  # epoch 2 of the same 4 images: new crops.
  it = data.make_loader("nyud-12x16", "train", batch_size=4, seed=0, data_dir=d)
  it.set_state({"next_batch": 2})
  np.testing.assert_array_equal(next(it)["depth"], a[2]["depth"])


def test_augment_moves_image_and_labels_together_and_flips_normals():
  h, w = 40, 60
  ramp = np.tile(np.arange(w), (h, 1))
  maps = {"image": np.stack([ramp * 4] * 3, -1).astype(np.uint8), "semseg": (ramp // 6).astype(np.int32),
          "normals": np.tile(np.array([0.6, 0.0, 0.8], np.float32), (h, w, 1)),
          "depth": (ramp / 10).astype(np.float32)}
  flips = 0
  for seed in range(12):
    out = dense_io.augment(maps, (24, 32), 1.0, np.random.default_rng(seed))
    valid = out["semseg"] >= 0
    col = out["image"][..., 0].astype(np.float64) / 4  # the source column each pixel came from.
    assert np.abs(col - (out["depth"] * 10))[valid].max() <= 2.0 + 1e-6  # bilinear vs nearest: within 2 columns.
    assert np.abs(col // 6 - out["semseg"])[valid].max() <= 1
    if valid.sum() > 50:
      rows = np.where(valid.all(1))[0]
      if len(rows):
        r = out["image"][rows[0], :, 0].astype(np.float64)[valid[rows[0]]]
        decreasing = r[-1] < r[0]
        # A mirrored image sees the normals' x component negated; y, z unchanged.
        assert np.all(out["normals"][valid][:, 0] == (-0.6 if decreasing else 0.6))
        flips += decreasing
    assert np.all(out["normals"][~valid] == 0) and np.all(out["depth"][~valid] == -1)
  assert 0 < flips < 12


def test_pascal_context_tasks_masks_and_derived_labels(dense_built):
  d, _, root, ids = dense_built
  info = data.get_info("pascal_context", d)
  assert [(t.name, t.kind, t.num_outputs) for t in info.tasks] == [
      ("semseg", "semseg", 21), ("human_parts", "human_parts", 7), ("saliency", "saliency", 1),
      ("normals", "normals", 3), ("edge", "boundary", 1)]
  b = _all("pascal_context-30x26", "val", d)
  import scipy.io
  from PIL import Image
  for k, i in enumerate(ids["pascal_context"]["val"]):
    labels = scipy.io.loadmat(os.path.join(root, "pascal-context", "trainval", f"{i}.mat"))["LabelMap"]
    valid = np.isin(labels, pascal_context.NORMALS_VALID_CLASSES)
    assert np.all(b["normals"][k][~valid] == 0) and np.all(np.abs(np.linalg.norm(b["normals"][k][valid], axis=-1) - 1)
                                                           < 0.02)
    np.testing.assert_array_equal(b["edge"][k], dense_io.label_boundaries(labels))
    sal = np.asarray(Image.open(os.path.join(root, "sal_distill", f"{i}.png"))) > 127
    np.testing.assert_array_equal(b["saliency"][k], sal)
  assert (b["semseg"][:, -1] == -1).all()  # 255 in the file is ignored.
  # Every other generated image has a person (first of each split): mask 1 and head / torso / lower-leg parts.
  np.testing.assert_array_equal(b["mask/human_parts"], [1, 0, 1])
  assert set(np.unique(b["human_parts"][0])) == {0, 1, 2, 6}
  assert (b["human_parts"][1] == 0).all()


def test_missing_folder_and_files_are_named(tmp_path, dense_built):
  with pytest.raises(MissingDataError, match="NYUDv2.*does not exist"):
    data.prepare("nyud", str(tmp_path / "tfds"))
  root = str(tmp_path / "ny")
  ids = dense_files.write_nyud(root, splits={"train": 2, "val": 1})
  os.remove(os.path.join(root, "depth", f"{ids['train'][1]}.npy"))
  with pytest.raises(MissingDataError, match=f"depth: .*{ids['train'][1]}.npy"):
    data.prepare("nyud", str(tmp_path / "tfds"), source=root)


def test_malformed_files_are_named(tmp_path):
  root = str(tmp_path / "ny")
  ids = dense_files.write_nyud(root, splits={"train": 1, "val": 1})
  np.save(os.path.join(root, "depth", f"{ids['val'][0]}.npy"), np.zeros((5, 5), np.float32))
  with pytest.raises(dense_io.MalformedDataError, match=r"depth/val_0000.npy \(depth map\): expected shape \(24, 32\)"):
    data.prepare("nyud", str(tmp_path / "tfds"), source=root)
  root = str(tmp_path / "pc")
  ids = dense_files.write_pascal_context(root, splits={"train": 1, "val": 1})
  import scipy.io
  scipy.io.savemat(os.path.join(root, "human_parts", f"{ids['train'][0]}.mat"), {"anno": {"imname": "x"}})
  with pytest.raises(dense_io.MalformedDataError, match="human_parts/2008_000000.mat: expected a PASCAL-Part struct"):
    data.prepare("pascal_context", str(tmp_path / "tfds2"), source=root)


def test_resolution_variants_only_for_dense_datasets():
  assert data.get_info("nyud-32x48").input_shape == (32, 48, 3)
  with pytest.raises(ValueError, match="unknown dataset|fixed resolution"):
    data.get_info("cifar100_mtl-16x16")


# ------------------------------------------------------------------------------------------- CIFAR-100 pickles
def _write_cifar_python(d, rng, n_train=30, n_test=10, coarse_names=cifar100_mtl.COARSE_NAMES):
  os.makedirs(d)
  out = {}
  for split, n in (("train", n_train), ("test", n_test)):
    fine = rng.integers(0, 100, n)
    coarse = cifar100_mtl.FINE_TO_COARSE[fine]
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
    d_ = {b"filenames": [b"x.png"] * n, b"batch_label": b"training batch 1 of 1", b"fine_labels": fine.tolist(),
          b"coarse_labels": coarse.tolist(), b"data": images.transpose(0, 3, 1, 2).reshape(n, -1)}
    with open(os.path.join(d, split), "wb") as f:
      pickle.dump(d_, f, protocol=2)
    out[split] = (images, coarse, fine)
  with open(os.path.join(d, "meta"), "wb") as f:
    pickle.dump({b"coarse_label_names": [c.encode() for c in coarse_names], b"fine_label_names": []}, f)
  return out


def test_cifar100_python_archive_found_from_the_data_dir(tmp_path):
  tfds_dir = str(tmp_path / "tfds")
  arrays = _write_cifar_python(os.path.join(tfds_dir, "downloads", "manual", "cifar-100-python"),
                               np.random.default_rng(0))
  assert sources.cifar100_dir(None, tfds_dir).endswith("cifar-100-python")
  data.prepare("cifar100_mtl", tfds_dir)
  b = _all("cifar100_mtl", "test", tfds_dir)
  images, coarse, fine = arrays["test"]
  np.testing.assert_allclose(b["image"], images / 255.0, atol=1e-6)
  for t_i, name in enumerate(cifar100_mtl.COARSE_NAMES):
    on = coarse == t_i
    np.testing.assert_array_equal(b[f"mask/{name}"], on.astype(np.float32))
    np.testing.assert_array_equal(b[name][on], cifar100_mtl.FINE_RANK[fine[on]])


def test_cifar100_python_rejects_bad_meta_and_foreign_pickles(tmp_path):
  names = list(cifar100_mtl.COARSE_NAMES)
  names[0], names[1] = names[1], names[0]
  d = str(tmp_path / "cifar-100-python")
  _write_cifar_python(d, np.random.default_rng(1), coarse_names=names)
  with pytest.raises(ValueError, match="coarse_label_names"):
    sources.cifar100("train", d)
  with open(os.path.join(d, "train"), "wb") as f:
    pickle.dump({"data": os.system}, f)
  with pytest.raises(ValueError, match="refusing to unpickle"):
    sources.cifar100("train", d)
