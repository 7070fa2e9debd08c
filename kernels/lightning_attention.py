"""Lightning attention (TransNormerLLM) as Pallas kernels with a custom VJP.

Public function: `lightning_attention(q, k, v, slopes, causal, block_size,
interpret, ..., impl)`, same semantics as
`kernels.reference.lightning_attention_chunked` (shapes q, k [B, H, L, Dk],
v [B, H, L, Dv], slopes [H]; decay lambda_h = exp(-slopes[h]) per token).
It dispatches by backend (`impl`): 'triton_serial' (this file, GPU default),
'triton_chunked' (kernels/lightning_chunked.py), 'mosaic' (TPU default,
kernels/tpu/lightning_attention.py) or 'reference'; on CPU the kernels run in
interpret mode.

Serial Triton kernels (one program per (batch, head[, Dv block]), looping over
sequence blocks of C tokens with a kv state kept on chip):
  forward  o = (M * q k^T) v + (lambda^(i+1) q) S;  S <- lambda^C S + (lambda^(C-1-j) k)^T v
  backward dq: the forward kernel on (do, v, k);
           bwd='split' (default): dk, dv by the forward kernel run in
           reverse block order (anti-causal) on (v, do, q) and (k, q, do);
           bwd='fused': dk, dv by one reverse-order kernel sharing a state
           B = sum_t lambda^(..) q_t^T do_t [Dk, Dv]:
           dk = (M * do v^T)^T q + lambda^(C-j) v B^T,
           dv = (M * q k^T)^T do + lambda^(C-j) k B.
Slopes are treated as constants (TransNormerLLM keeps them fixed): their
gradient is zero. Non-causal attention (symmetric decay lambda^|t-s|) is built
from a causal and a reversed causal pass minus the diagonal.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from kernels import reference as ref
from kernels.tpu.lightning_attention import lightning_attention as lightning_attention_tpu
from kernels.lightning_chunked import lightning_attention_chunked

_HI = lax.Precision.HIGHEST


def default_interpret(interpret: bool | None) -> bool:
  """None -> True on CPU (Pallas interpret mode), False on GPU/TPU."""
  if interpret is None:
    return jax.default_backend() == "cpu"
  return bool(interpret)


def _gpu_params(interpret: bool, num_stages: int | None = None):
  """Triton compiler params. Always given: since jax 0.10 a GPU pallas_call without them lowers to Mosaic GPU."""
  del interpret
  return plgpu.CompilerParams(num_warps=4 if num_stages is not None else None, num_stages=num_stages)


def _dot(a, b):
  return jnp.dot(a, b, precision=_HI, preferred_element_type=jnp.float32)


def _decays(s, c):
  """In-block decay factors for rate s (scalar) and block size c."""
  idx = lax.broadcasted_iota(jnp.int32, (c, c), 0)
  jdx = lax.broadcasted_iota(jnp.int32, (c, c), 1)
  diff = (idx - jdx).astype(jnp.float32)
  mask = jnp.where(diff >= 0, jnp.exp(-s * jnp.maximum(diff, 0.0)), 0.0)
  pos = lax.broadcasted_iota(jnp.int32, (c, 1), 0).astype(jnp.float32)
  return mask, pos


def _fwd_kernel(s_ref, q_ref, k_ref, v_ref, o_ref, *, block, num_blocks,
                reverse=False):
  """q_ref, k_ref [L, Dk]; v_ref, o_ref [L, bv]; s_ref scalar rate.

  reverse=True computes the anti-causal o_t = sum_{s >= t} lambda^(s-t)
  (q_t.k_s) v_s, walking the blocks from the end (used by the backward).
  """
  s = s_ref[()].astype(jnp.float32)
  c = block
  mask, pos = _decays(s, c)
  if reverse:
    mask = mask.T                              # lambda^(j-i), j >= i
    q_decay = jnp.exp(-s * (c - pos))          # lambda^(C-i)
    k_decay = jnp.exp(-s * pos)                # lambda^j
  else:
    q_decay = jnp.exp(-s * (pos + 1.0))        # lambda^(i+1)   [C, 1]
    k_decay = jnp.exp(-s * (c - 1.0 - pos))    # lambda^(C-1-j) [C, 1]
  blk_decay = jnp.exp(-s * c)

  def body(i, state):
    n = num_blocks - 1 - i if reverse else i
    sl = pl.ds(pl.multiple_of(n * c, c), c)
    qb = q_ref[sl, :].astype(jnp.float32)
    kb = k_ref[sl, :].astype(jnp.float32)
    vb = v_ref[sl, :].astype(jnp.float32)
    scores = _dot(qb, kb.T) * mask
    o = _dot(scores, vb) + _dot(qb * q_decay, state)
    o_ref[sl, :] = o.astype(o_ref.dtype)
    return blk_decay * state + _dot((kb * k_decay).T, vb)

  state = jnp.zeros((q_ref.shape[-1], v_ref.shape[-1]), jnp.float32)
  lax.fori_loop(0, num_blocks, body, state)


def _bwd_kv_kernel(s_ref, q_ref, k_ref, v_ref, do_ref, dk_ref, dv_ref, *,
                   block, num_blocks):
  """Reverse-order pass for dk [L, Dk] and dv [L, Dv] (one shared state)."""
  s = s_ref[()].astype(jnp.float32)
  c = block
  mask, pos = _decays(s, c)
  kv_decay = jnp.exp(-s * (c - pos))           # lambda^(C-j)  [C, 1]
  q_decay = jnp.exp(-s * pos)                  # lambda^i      [C, 1]
  blk_decay = jnp.exp(-s * c)

  def body(i, state):
    n = num_blocks - 1 - i
    sl = pl.ds(pl.multiple_of(n * c, c), c)
    qb = q_ref[sl, :].astype(jnp.float32)
    kb = k_ref[sl, :].astype(jnp.float32)
    vb = v_ref[sl, :].astype(jnp.float32)
    dob = do_ref[sl, :].astype(jnp.float32)
    s_dv = _dot(dob, vb.T) * mask              # [C(t), C(s)]
    s_qk = _dot(qb, kb.T) * mask
    dk = _dot(s_dv.T, qb) + _dot(vb * kv_decay, state.T)
    dv = _dot(s_qk.T, dob) + _dot(kb * kv_decay, state)
    dk_ref[sl, :] = dk.astype(dk_ref.dtype)
    dv_ref[sl, :] = dv.astype(dv_ref.dtype)
    return blk_decay * state + _dot((qb * q_decay).T, dob)

  state = jnp.zeros((q_ref.shape[-1], v_ref.shape[-1]), jnp.float32)
  lax.fori_loop(0, num_blocks, body, state)


def _flat(x):
  return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _head_slopes(slopes, b):
  return jnp.tile(slopes.astype(jnp.float32), b)  # [B*H], batch-major


def _fwd_call(q, k, v, slopes, block, interpret, block_v=None,
              reverse=False):
  """(Anti-)causal pass on padded inputs (L % block == 0) -> [B, H, L, Dv]."""
  b, h, length, dk = q.shape
  dv = v.shape[-1]
  bv = dv if block_v is None or dv % block_v else block_v
  kernel = functools.partial(_fwd_kernel, block=block,
                             num_blocks=length // block, reverse=reverse)
  out = pl.pallas_call(
      kernel,
      grid=(b * h, dv // bv),
      in_specs=[
          pl.BlockSpec((None,), lambda i, j: (i,)),
          pl.BlockSpec((None, length, dk), lambda i, j: (i, 0, 0)),
          pl.BlockSpec((None, length, dk), lambda i, j: (i, 0, 0)),
          pl.BlockSpec((None, length, bv), lambda i, j: (i, 0, j)),
      ],
      out_specs=pl.BlockSpec((None, length, bv), lambda i, j: (i, 0, j)),
      out_shape=jax.ShapeDtypeStruct((b * h, length, dv), v.dtype),
      interpret=interpret,
      compiler_params=_gpu_params(interpret),
      name="lightning_fwd",
  )(_head_slopes(slopes, b), _flat(q), _flat(k), _flat(v))
  return out.reshape(b, h, length, dv)


def _bwd_kv_call(q, k, v, do, slopes, block, interpret):
  b, h, length, dk = q.shape
  dv = v.shape[-1]
  kernel = functools.partial(_bwd_kv_kernel, block=block,
                             num_blocks=length // block)
  spec_k = pl.BlockSpec((None, length, dk), lambda i: (i, 0, 0))
  spec_v = pl.BlockSpec((None, length, dv), lambda i: (i, 0, 0))
  dk_, dv_ = pl.pallas_call(
      kernel,
      grid=(b * h,),
      in_specs=[pl.BlockSpec((None,), lambda i: (i,)),
                spec_k, spec_k, spec_v, spec_v],
      out_specs=[spec_k, spec_v],
      out_shape=[jax.ShapeDtypeStruct((b * h, length, dk), k.dtype),
                 jax.ShapeDtypeStruct((b * h, length, dv), v.dtype)],
      interpret=interpret,
      # Five [C, D] tiles + the state: pipelining deeper than 1 stage
      # overflows shared memory on H100 for D = 128.
      compiler_params=_gpu_params(interpret, num_stages=1),
      name="lightning_bwd_kv",
  )(_head_slopes(slopes, b), _flat(q), _flat(k), _flat(v), _flat(do))
  return dk_.reshape(k.shape), dv_.reshape(v.shape)


BWD_IMPLS = ("split", "fused")


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _causal_padded(q, k, v, slopes, block, interpret, block_v, bwd):
  return _fwd_call(q, k, v, slopes, block, interpret, block_v)


def _causal_padded_fwd(q, k, v, slopes, block, interpret, block_v, bwd):
  o = _fwd_call(q, k, v, slopes, block, interpret, block_v)
  return o, (q, k, v, slopes)


def _causal_padded_bwd(block, interpret, block_v, bwd, res, do):
  q, k, v, slopes = res
  do = do.astype(v.dtype)
  dq = _fwd_call(do, v, k, slopes, block, interpret, block_v)
  if bwd == "fused":
    dk, dv = _bwd_kv_call(q, k, v, do, slopes, block, interpret)
  else:
    dk = _fwd_call(v, do, q, slopes, block, interpret, block_v, reverse=True)
    dv = _fwd_call(k, q, do, slopes, block, interpret, block_v, reverse=True)
  return (dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype),
          jnp.zeros_like(slopes))


_causal_padded.defvjp(_causal_padded_fwd, _causal_padded_bwd)


IMPLS = ("triton_serial", "triton_chunked", "mosaic", "reference")


def default_impl(backend: str | None = None) -> str:
  """Kernel picked by backend: gpu -> 'triton_serial', tpu -> 'mosaic', cpu -> 'triton_serial' (interpreted).

  The GPU default stays the serial kernel (compiled and measured on an H100) until 'triton_chunked' is
  measured there (docs/bench_attention.md).
  """
  backend = jax.default_backend() if backend is None else backend
  return "mosaic" if backend == "tpu" else "triton_serial"


def _lightning_serial(q, k, v, slopes, causal, block_size, interpret, block_v, bwd):
  length = q.shape[2]

  def causal_fn(q, k, v):
    qp, kp, vp = (ref.pad_to_block(x, block_size) for x in (q, k, v))
    o = _causal_padded(qp, kp, vp, slopes, block_size, interpret, block_v,
                       bwd)
    return o[:, :, :length]

  if causal:
    return causal_fn(q, k, v)
  return ref.bidirectional_from_causal(causal_fn, q, k, v).astype(v.dtype)


def lightning_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                        slopes: jax.Array, causal: bool = True,
                        block_size: int = 64,
                        interpret: bool | None = None,
                        block_v: int | None = None,
                        bwd: str | None = None,
                        impl: str | None = None,
                        precision: str | None = None) -> jax.Array:
  """Lightning attention, dispatched to a Pallas kernel by backend (differentiable).

  Args:
    q, k: [B, H, L, Dk]; v: [B, H, L, Dv]; slopes: [H] decay rates
      (lambda_h = exp(-slopes[h])); any L (zero-padded to the block).
    causal: causal decay mask, else symmetric decay lambda^|t - s|.
    block_size: C, tokens per block (>= 16 and a power of two for the
      compiled GPU kernels, a multiple of 8 (16 for bfloat16) for 'mosaic').
    interpret: None -> interpret on CPU, compiled elsewhere ('mosaic' runs in
      TPU interpret mode when interpreted).
    block_v: 'triton_serial': split of Dv across programs in the forward
      kernel; 'triton_chunked': Dv split of the prefix pass.
    bwd: 'triton_serial' only: 'split' (default; dq, dk, dv as three causal /
      anti-causal passes of the forward kernel, Dv-parallel) or 'fused' (one
      reverse kernel for dk, dv sharing a single state; less parallel).
    impl: None (`default_impl()`), 'triton_serial' (one program per (b, h[, Dv
      block]) walking the sequence), 'triton_chunked' (two-pass, parallel over
      blocks, bf16-capable; kernels/lightning_chunked.py), 'mosaic' (TPU;
      kernels/tpu/lightning_attention.py) or 'reference' (jnp, no kernel).
    precision: 'triton_chunked' with float32 inputs: 'ieee' (default) or 'tf32'.
  Returns:
    [B, H, L, Dv] in v.dtype; the sum over keys is accumulated in float32.
  """
  ref.check_qkv(q, k, v, slopes)
  if block_size <= 0:
    raise ValueError(f"block_size must be positive, got {block_size}")
  impl = default_impl() if impl is None else impl
  if impl not in IMPLS:
    raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")
  if bwd is not None and impl != "triton_serial":
    raise ValueError(f"bwd={bwd!r} applies to impl='triton_serial' only, not {impl!r}")
  if block_v is not None and impl not in ("triton_serial", "triton_chunked"):
    raise ValueError(f"block_v applies to the Triton kernels only, not impl={impl!r}")
  if precision is not None and impl != "triton_chunked":
    raise ValueError(f"precision applies to impl='triton_chunked' only, not {impl!r}")
  if impl == "reference":
    if interpret:
      raise ValueError("impl='reference' is plain jnp: interpret=True has no effect")
    return ref.lightning_attention_chunked(q, k, v, slopes, causal=causal, block_size=block_size)
  interpret = default_interpret(interpret)
  if impl == "mosaic":
    return lightning_attention_tpu(q, k, v, slopes, causal=causal, block_size=block_size, interpret=interpret)
  if impl == "triton_chunked":
    return lightning_attention_chunked(q, k, v, slopes, causal=causal, block_size=block_size,
                                       interpret=interpret, precision=precision, block_v=block_v)
  bwd = "split" if bwd is None else bwd
  if bwd not in BWD_IMPLS:
    raise ValueError(f"unknown bwd {bwd!r}; expected one of {BWD_IMPLS}")
  if not interpret and jax.default_backend() != "gpu":
    raise ValueError(f"impl='triton_serial' compiles only on GPU; backend is {jax.default_backend()!r}: "
                     "pass interpret=True")
  return _lightning_serial(q, k, v, slopes, causal, block_size, interpret, block_v, bwd)
