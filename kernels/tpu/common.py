"""Shared helpers of the Mosaic (TPU) kernels."""
from __future__ import annotations

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

# f32 vregs are (8, 128); a block's second-minor dim must be a multiple of 8 (16 for bf16) unless it
# spans the whole array dim.
SUBLANES = 8
LANES = 128


def interpret_params(interpret: bool) -> pltpu.InterpretParams | bool:
  """interpret=True -> TPU interpret mode (simulated VMEM/SMEM, DMAs), usable on CPU; False -> compiled."""
  return pltpu.InterpretParams() if interpret else False


def check_backend(interpret: bool) -> None:
  """Compiled Mosaic kernels need a TPU; raise a clear error elsewhere."""
  if not interpret and jax.default_backend() != "tpu":
    raise ValueError(f"the Mosaic (TPU) kernel compiles only on TPU; backend is {jax.default_backend()!r}: "
                     "pass interpret=True to run it in TPU interpret mode")


def smem_spec() -> pl.BlockSpec:
  """Whole (small) array in SMEM: per-program scalars indexed by pl.program_id."""
  return pl.BlockSpec(memory_space=pltpu.SMEM)


def compiler_params(*semantics: str) -> pltpu.CompilerParams:
  return pltpu.CompilerParams(dimension_semantics=semantics)


def sublane_multiple(dtype) -> int:
  """Rows per vreg tile for dtype: 8 (32-bit), 16 (16-bit), 32 (8-bit)."""
  return SUBLANES * max(1, 4 // jax.numpy.dtype(dtype).itemsize)
