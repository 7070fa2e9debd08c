"""Linear-attention recurrent decode step as a Pallas TPU (Mosaic) kernel.

`linear_decode(q, k, v, state, slopes, interpret)` has the semantics of
`kernels.reference.linear_decode_step`: S' = lambda_h S + k^T v, o = q S',
q, k [B, H, Dk], v [B, H, Dv], state [B, H, Dk, Dv], slopes [H].

Grid (B*H,), one [Dk, Dv] state tile per program in VMEM (head dims whole,
so any Dk, Dv; multiples of 128 fill the lanes), decay factors in SMEM; the
state is updated in place (input/output aliasing). Memory bound: the state is
read and written once, the outer product and q S' are VPU broadcasts and a
sublane reduction (one query row would waste the MXU).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels import reference as ref
from kernels.tpu import common


def _kernel(lam_ref, q_ref, k_ref, v_ref, st_ref, o_ref, new_ref):
  """q_ref, k_ref [Dk, 1] (keys on sublanes); v_ref [1, Dv]; st_ref, new_ref [Dk, Dv]; o_ref [1, Dv];
  lam_ref SMEM [B*H] decay factors exp(-s) (computed outside: the scalar unit has no exp)."""
  lam = lam_ref[pl.program_id(0)]
  new = lam * st_ref[...].astype(jnp.float32) + k_ref[...].astype(jnp.float32) * v_ref[...].astype(jnp.float32)
  new_ref[...] = new.astype(new_ref.dtype)
  o_ref[...] = jnp.sum(q_ref[...].astype(jnp.float32) * new, axis=0, keepdims=True).astype(o_ref.dtype)


def linear_decode(q: jax.Array, k: jax.Array, v: jax.Array, state: jax.Array, slopes: jax.Array,
                  interpret: bool = False) -> tuple[jax.Array, jax.Array]:
  """One linear-attention decode step (Mosaic kernel).

  Args:
    q, k: [B, H, Dk]; v: [B, H, Dv]; state: [B, H, Dk, Dv]; slopes: [H];
    interpret: True -> TPU interpret mode (runs on CPU), False -> compiled (TPU only).
  Returns:
    (o [B, H, Dv] in v.dtype, new state [B, H, Dk, Dv] in state.dtype).
  """
  ref.check_decode_linear(q, k, v, state, slopes)
  common.check_backend(interpret)
  b, h, dk = q.shape
  dv = v.shape[-1]
  n = b * h
  col = pl.BlockSpec((None, dk, 1), lambda i: (i, 0, 0))
  row = pl.BlockSpec((None, 1, dv), lambda i: (i, 0, 0))
  mat = pl.BlockSpec((None, dk, dv), lambda i: (i, 0, 0))
  o, new = pl.pallas_call(
      _kernel,
      grid=(n,),
      in_specs=[common.smem_spec(), col, col, row, mat],
      out_specs=[row, mat],
      out_shape=[jax.ShapeDtypeStruct((n, 1, dv), v.dtype), jax.ShapeDtypeStruct((n, dk, dv), state.dtype)],
      input_output_aliases={4: 1},
      compiler_params=common.compiler_params("parallel"),
      interpret=common.interpret_params(interpret),
      name="linear_decode_tpu",
  )(jnp.exp(-jnp.tile(slopes.astype(jnp.float32), b)), q.reshape(n, dk, 1), k.reshape(n, dk, 1), v.reshape(n, 1, dv),
    state.reshape(n, dk, dv))
  return o.reshape(b, h, dv), new.reshape(state.shape)
