"""Shared base of the mtl TFDS builders: sources given at construction, generation in file order, no downloads."""
from __future__ import annotations

import abc
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

# Builders are registered in tfds under these names (prefixed to avoid clashes with the tfds catalogue).
PREFIX = "mtl_"


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of local files: subclasses define `FEATURES` (name -> tfds feature) and `DESCRIPTION`; `source`
  (a path; meaning per dataset) overrides the default file locations. Examples keep their written order
  (`disable_shuffling`)."""
  FEATURES: dict = {}
  DESCRIPTION = ""

  def __init__(self, *, source: str | None = None, **kwargs):
    self._source = source
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=tfds.features.FeaturesDict(dict(self.FEATURES)), disable_shuffling=True)


class ArrayBuilder(LocalBuilder, skip_registration=True):
  """A builder whose splits are numpy arrays computed from local files.

  Subclasses define `FEATURES`, `DESCRIPTION` and `_arrays(self) -> {split: {feature: array [N, ...]}}`.
  Examples are written in array order, keyed by their index.
  """

  @abc.abstractmethod
  def _arrays(self) -> dict[str, dict[str, np.ndarray]]:
    """split -> feature -> array with a leading example axis."""

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local.
    return {split: self._generate_examples(arrays) for split, arrays in self._arrays().items()}

  def _generate_examples(self, arrays: dict[str, np.ndarray]) -> Iterator[tuple[int, dict]]:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"{self.name}: features have different lengths {lengths}")
    for i in range(next(iter(lengths.values()))):
      yield i, {k: v[i] for k, v in arrays.items()}
