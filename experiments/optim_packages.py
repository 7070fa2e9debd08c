"""The optimiser packages a before/after benchmark compares: today's `mtl.optim` and, optionally, an older copy.

The older copy is a directory holding a saved `mtl/optim` tree whose imports were rewritten to the directory's
name (e.g. /tmp/i15_old/mtl_optim_old), loaded as a second package in the same process so that before/after
figures share the machine state.
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def optim_packages(baseline_pkg: str | None) -> dict[str, ModuleType]:
  """{'new': mtl.optim} plus {'old': the package at `baseline_pkg`} when a path is given."""
  import mtl.optim as new
  pkgs = {"new": new}
  if baseline_pkg:
    if not os.path.isdir(baseline_pkg):
      raise ValueError(f"--baseline_pkg {baseline_pkg!r} is not a directory holding a saved mtl/optim package")
    sys.path.insert(0, os.path.dirname(os.path.abspath(baseline_pkg)))
    pkgs["old"] = importlib.import_module(os.path.basename(os.path.normpath(baseline_pkg)))
  return pkgs
