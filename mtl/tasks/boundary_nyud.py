"""Boundary detection with NYUDv2's matching tolerance (0.011 of the image diagonal, the SEISM setting of
MTI-Net / InvPT for NYUD); loss, metrics and everything else as `mtl.tasks.boundary` (0.0075, PASCAL-Context)."""
from __future__ import annotations

import functools
import sys

from mtl.tasks import boundary
from mtl.tasks.registry import TASK_KINDS

METRICS = boundary.METRICS
HEAD = boundary.HEAD
loss = boundary.loss
finalize = boundary.finalize
check_shapes = boundary.check_shapes
stats = functools.partial(boundary.stats, max_dist=boundary.MAX_DIST_NYUD)

TASK_KINDS.register("boundary_nyud", sys.modules[__name__])
