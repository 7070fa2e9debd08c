"""Base of the TFDS builders that read a dense multi-task benchmark from its unpacked folder, one example at a
time (the splits do not fit in memory at full resolution).

The folder is `source` (the builder argument), else the builder's environment variable, else
<data_dir>/downloads/manual/<MANUAL_DIR>. Before anything is written, every file of every split is checked to
exist; a missing folder or file raises `MissingDataError` naming it and the expected layout.
"""
from __future__ import annotations

import abc
import os
from typing import Iterator


from mtl.data.builders.base import LocalBuilder
from mtl.data.errors import MissingDataError


class FolderBuilder(LocalBuilder, skip_registration=True):
  """Subclasses define FEATURES, DESCRIPTION, ENV_VAR, MANUAL_DIR, LAYOUT (a text shown in errors),
  `split_ids(root) -> {split: [id, ...]}`, `files(root, id) -> {what: path}` and `example(root, id) -> dict`."""
  ENV_VAR = ""
  MANUAL_DIR = ""
  LAYOUT = ""

  def root(self) -> str:
    root = (self._source or os.environ.get(self.ENV_VAR) or
            os.path.join(self.data_dir_root, "downloads", "manual", self.MANUAL_DIR))
    if not os.path.isdir(root):
      raise MissingDataError(f"{self.name}: data folder {root} does not exist. Put the unpacked dataset there, set "
                             f"${self.ENV_VAR}, or pass source=DIR. Expected layout:\n{self.LAYOUT}")
    return root

  @abc.abstractmethod
  def split_ids(self, root: str) -> dict[str, list[str]]:
    """split -> image ids."""

  @abc.abstractmethod
  def files(self, root: str, image_id: str) -> dict[str, str]:
    """what -> path of every file an example needs (checked to exist before building)."""

  @abc.abstractmethod
  def example(self, root: str, image_id: str) -> dict:
    """The stored features of one example (reads and checks its files)."""

  def check_files(self, root: str, splits: dict[str, list[str]]) -> None:
    missing = [(what, p) for ids in splits.values() for i in ids for what, p in self.files(root, i).items()
               if not os.path.isfile(p)]
    if missing:
      shown = "\n".join(f"  {what}: {p}" for what, p in missing[:5])
      raise MissingDataError(f"{self.name}: {len(missing)} file(s) listed by the split lists are missing in {root}, "
                             f"e.g.\n{shown}\nExpected layout:\n{self.LAYOUT}")

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local.
    root = self.root()
    splits = self.split_ids(root)
    self.check_files(root, splits)
    return {split: self._generate_examples(root, ids) for split, ids in splits.items()}

  def _generate_examples(self, root: str, ids: list[str]) -> Iterator[tuple[str, dict]]:
    for image_id in ids:
      yield image_id, self.example(root, image_id)
