"""Models, encoders and heads by name (one `mtl.registry.Registry` each).

  MODELS    name -> build(model_cfg, tasks, input_shape, mesh) -> nn.Module    (config.model.name)
  ENCODERS  name -> encoder class, built with config.model.encoder's keys      (config.model.encoder.name)
  HEADS     name -> build(task_spec, head_cfg, out_hw) -> nn.Module            (config.model.head.name, default:
            the `HEAD` declared by the task kind's module, e.g. 'classification' or 'dense')
"""
from __future__ import annotations

from typing import Any, Callable

from mtl.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model", package="mtl.models")
ENCODERS: Registry[type] = Registry("encoder")
HEADS: Registry[Callable[..., Any]] = Registry("head")
