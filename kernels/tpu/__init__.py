"""Pallas TPU (Mosaic) variants of the kernels in `kernels/`.

  lightning_attention  chunked lightning attention, grid (B*H, L/C) with the
                       [Dk, Dv] kv state carried in VMEM scratch; custom VJP.
  softmax_decode       one query token over a KV cache, grid (B*H, Lmax/bk)
                       with the running softmax (m, l, acc) in VMEM scratch.
  linear_decode        one recurrent-state decode step, grid (B*H,).

They run compiled on TPU and in TPU interpret mode (`pltpu.InterpretParams`)
on CPU; the public dispatchers in `kernels/*.py` pick them with impl='mosaic'.
"""
