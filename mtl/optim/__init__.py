"""Multi-task optimisation: loss weighting and gradient aggregation as optax transformations.

  method = get_method(name, num_tasks, **options)
  state = method.init(params)
  grads, state, losses, aux, metrics = combine_gradients(method, state, task_loss_fn, params, step)
  optax.chain(method.tx, optax.adam(1e-3))   # or as a transformation on task-stacked gradients

See docs/mtl_optim.md.
"""
# Importing the method modules registers them.
from mtl.optim import aligned, bargaining, cagrad, config_method, dbmtl, dualproj, excess, graddrop, gradnorm, imtl, \
    loss_weighting, mgda, moco, modo, sdmgrad, stch, surgery, upgrad  # noqa: F401
from mtl.optim.base import KINDS, Method
from mtl.optim.combine import FeatureSplit, combine_gradients, per_task_grads
from mtl.optim.masking import masked_mean
from mtl.optim.registry import get_method, known_methods

__all__ = ["KINDS", "Method", "FeatureSplit", "combine_gradients", "per_task_grads", "masked_mean", "get_method",
           "known_methods"]
