"""Task kinds by name: `TASK_KINDS`. A kind is a module `mtl/tasks/<kind>.py` with `loss`, `stats`, `finalize`,
`check_shapes` and `METRICS`, which registers itself: `TASK_KINDS.register("<kind>", sys.modules[__name__])`."""
from __future__ import annotations

import types

from mtl.registry import Registry

TASK_KINDS: Registry[types.ModuleType] = Registry("task kind", package="mtl.tasks")
