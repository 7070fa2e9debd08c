"""Per-sample missing labels: a task without a label in a sample contributes nothing to that task's loss.

The batch may carry 'mask/<task>' float [B] (1 = labelled). Task losses are masked means; one
implementation is shared with mtl.tasks so the losses and the optimiser agree.
"""
from mtl.tasks.masking import masked_mean

__all__ = ["masked_mean"]
