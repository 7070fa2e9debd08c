"""Pallas decode step for causal (lightning) linear attention.

Public function `linear_decode(q, k, v, state, slopes, interpret, impl)`,
same semantics as `kernels.reference.linear_decode_step`:
  S' = lambda_h S + k^T v,   o = q S'
with q, k [B, H, Dk], v [B, H, Dv], state [B, H, Dk, Dv], slopes [H]
(lambda_h = exp(-slopes[h])). One program per (batch, head); the state is
updated in place (input/output aliasing) so a decoder loop does not copy it.
Memory bound: it reads and writes the [Dk, Dv] state once per token, so it
uses broadcasts + reductions rather than tensor-core dots (one query row).
Dispatch: impl 'triton' (this kernel; GPU or interpret mode), 'mosaic'
(kernels/tpu/linear_decode.py; TPU or TPU interpret mode) or 'reference'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from kernels import reference as ref
from kernels.tpu.linear_decode import linear_decode as linear_decode_tpu
from kernels.lightning_attention import default_interpret


def _kernel(s_ref, q_ref, k_ref, v_ref, st_ref, o_ref, new_ref):
  lam = jnp.exp(-s_ref[()].astype(jnp.float32))
  q = q_ref[...].astype(jnp.float32)
  k = k_ref[...].astype(jnp.float32)
  v = v_ref[...].astype(jnp.float32)
  new = lam * st_ref[...].astype(jnp.float32) + k[:, None] * v[None, :]
  new_ref[...] = new.astype(new_ref.dtype)
  o_ref[...] = jnp.sum(q[:, None] * new, axis=0).astype(o_ref.dtype)


IMPLS = ("triton", "mosaic", "reference")


def linear_decode(q: jax.Array, k: jax.Array, v: jax.Array, state: jax.Array,
                  slopes: jax.Array, interpret: bool | None = None,
                  impl: str | None = None) -> tuple[jax.Array, jax.Array]:
  """One linear-attention decode step.

  Args:
    q, k: [B, H, Dk]; v: [B, H, Dv]; state: [B, H, Dk, Dv]; slopes: [H].
    interpret: None -> interpret on CPU, compiled elsewhere.
    impl: None -> 'mosaic' on TPU, else 'triton'; or 'reference' (jnp).
  Returns:
    (o [B, H, Dv] in v.dtype, new state [B, H, Dk, Dv] in state.dtype).
  """
  ref.check_decode_linear(q, k, v, state, slopes)
  impl = ("mosaic" if jax.default_backend() == "tpu" else "triton") if impl is None else impl
  if impl not in IMPLS:
    raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")
  if impl == "reference":
    if interpret:
      raise ValueError("impl='reference' is plain jnp: interpret=True has no effect")
    return ref.linear_decode_step(q, k, v, state, slopes)
  interpret = default_interpret(interpret)
  if impl == "mosaic":
    return linear_decode_tpu(q, k, v, state, slopes, interpret=interpret)
  b, h, dk = q.shape
  dv = v.shape[-1]
  n = b * h
  vec = lambda d: pl.BlockSpec((None, d), lambda i: (i, 0))
  mat = pl.BlockSpec((None, dk, dv), lambda i: (i, 0, 0))
  o, new = pl.pallas_call(
      _kernel,
      grid=(n,),
      in_specs=[pl.BlockSpec((None,), lambda i: (i,)),
                vec(dk), vec(dk), vec(dv), mat],
      out_specs=[vec(dv), mat],
      out_shape=[jax.ShapeDtypeStruct((n, dv), v.dtype),
                 jax.ShapeDtypeStruct((n, dk, dv), state.dtype)],
      input_output_aliases={4: 1},
      interpret=interpret,
      compiler_params=plgpu.CompilerParams(),  # Triton (jax >= 0.10 defaults to Mosaic GPU)
      name="linear_decode",
  )(jnp.tile(slopes.astype(jnp.float32), b), q.reshape(n, dk),
    k.reshape(n, dk), v.reshape(n, dv), state.reshape(n, dk, dv))
  return o.reshape(b, h, dv), new.reshape(state.shape)
