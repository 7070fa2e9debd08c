"""Multi-process start-up with jax's own runtime (`jax.distributed`).

Launchers (launch/) set MTL_COORDINATOR, MTL_NUM_PROCESSES and MTL_PROCESS_ID (and, on CPU, XLA_FLAGS with the
device count per process); on TPU pods and SLURM,
`jax.distributed.initialize()` finds them itself, which MTL_AUTO_DISTRIBUTED=1 asks for.
"""
from __future__ import annotations

import os

import jax


def initialize_from_env() -> bool:
  """Calls `jax.distributed.initialize` when the environment asks for it; returns whether it did."""
  if os.environ.get("MTL_AUTO_DISTRIBUTED") == "1":
    jax.distributed.initialize()
    return True
  coordinator = os.environ.get("MTL_COORDINATOR")
  if not coordinator:
    return False
  try:
    num = int(os.environ["MTL_NUM_PROCESSES"])
    pid = int(os.environ["MTL_PROCESS_ID"])
  except (KeyError, ValueError) as e:
    raise ValueError("MTL_COORDINATOR is set, so MTL_NUM_PROCESSES and MTL_PROCESS_ID must be integers") from e
  if not 0 <= pid < num:
    raise ValueError(f"MTL_PROCESS_ID={pid} must be in [0, MTL_NUM_PROCESSES={num})")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num, process_id=pid)
  return True
