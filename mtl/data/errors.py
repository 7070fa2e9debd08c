"""Errors raised by the data package."""
from __future__ import annotations


class MissingDataError(RuntimeError):
  """A raw source file needed to build a dataset is absent; the message says what to install or where to put it."""
