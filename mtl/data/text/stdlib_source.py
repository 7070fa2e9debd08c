"""Python standard-library source as a byte-level LM corpus.

Files: every `*.py` under the directory of the `os` module, skipping test
suites and site-packages. Each file goes to one split by a hash of its path
relative to that directory (train 90%, validation 5%, test 5%), so no file is
in two splits. A split is the concatenation of its files (sorted by path,
separated by a blank line) cut into fixed-length chunks.
"""
from __future__ import annotations

import functools
import os
import zlib

import numpy as np

SPLITS = ("train", "validation", "test")
_SKIP_DIRS = {"test", "tests", "site-packages", "__pycache__", "idle_test"}


def stdlib_dir() -> str:
  """Directory of the running Python's standard library (of `os`)."""
  return os.path.dirname(os.__file__)


def split_of(relpath: str) -> str:
  h = zlib.crc32(relpath.encode("utf-8")) % 100
  return "train" if h < 90 else ("validation" if h < 95 else "test")


def list_files(root: str | None = None) -> list[str]:
  """Relative paths of the source files under root (sorted)."""
  root = root or stdlib_dir()
  if not os.path.isdir(root):
    raise FileNotFoundError(f"stdlib source directory {root} not found")
  out = []
  for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS)
    for f in files:
      if f.endswith(".py"):
        out.append(os.path.relpath(os.path.join(d, f), root))
  return sorted(out)


@functools.lru_cache(maxsize=8)
def corpus(split: str, root: str | None = None) -> np.ndarray:
  """uint8 [N] bytes of the split's files, concatenated."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  root = root or stdlib_dir()
  parts = []
  for rel in list_files(root):
    if split_of(rel) == split:
      with open(os.path.join(root, rel), "rb") as f:
        parts.append(f.read() + b"\n\n")
  if not parts:
    raise ValueError(f"no stdlib source files in split {split!r} under {root}")
  return np.frombuffer(b"".join(parts), np.uint8)


def num_chunks(split: str, chunk_len: int, root: str | None = None) -> int:
  """Number of non-overlapping chunks of chunk_len bytes in the split."""
  if chunk_len < 1:
    raise ValueError(f"chunk_len must be >= 1, got {chunk_len}")
  return len(corpus(split, root)) // chunk_len


def chunk(split: str, index: int, chunk_len: int, root: str | None = None
          ) -> list[int]:
  """Bytes [index * chunk_len, (index + 1) * chunk_len) of the split, as ids."""
  n = num_chunks(split, chunk_len, root)
  if not 0 <= index < n:
    raise ValueError(f"chunk index {index} out of range [0, {n})")
  c = corpus(split, root)
  return c[index * chunk_len:(index + 1) * chunk_len].astype(np.int32).tolist()
