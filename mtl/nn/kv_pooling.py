"""Multi-head -> grouped-query conversion that keeps what a group's heads share: per-group low-rank fits of the
key and value projections, with each head's remainder folded into its own query and output projections.

The GQA paper (Ainslie et al. 2023) mean-pools the K and V projections of each group (`mtl.nn.attention.
pool_kv_heads`). Here, for a group of G heads sharing one KV head:

- Values: the stacked value projections [W_v,1 | ... | W_v,G] ([D + 1, G Dh], bias as the last row) are fitted
  by their best rank-Dh factorisation W_g [B_1 | ... | B_G] (truncated SVD), so head h's values are
  approximately V_g B_h; B_h [Dh, Dh] moves into head h's rows of the output projection (B_h W_o,h), which is
  exact for the part of the values the fit keeps.
- Keys, under RoPE (half-split pairs (f, f + Dh/2), rotated as complex numbers k_f e^{i theta_f t}): per
  frequency pair f the G complex columns w_h,f = W_k,h[:, f] + i W_k,h[:, f + Dh/2] are fitted by their best
  rank-1 factorisation u_f c_h,f (complex SVD); since the score is Re sum_f conj(q_f) k_f and the rotation is a
  complex multiplication, c_h,f moves into head h's query pair (q_f -> conj(c_h,f) q_f), commuting with RoPE.
  This is exact whenever each head's key pair is a complex multiple of a shared one, whatever the positions.

Both fits are the least-squares optimum in weight space (no activation statistics), so they are never farther
from the multi-head projections than the mean (which is one admissible fit). The model's function is
unchanged when the fits are exact (tested), and the parameter tree is the one `pool_kv_heads` gives.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mtl.nn.attention import convert_qkv_modules


def _fit_values(wv: np.ndarray, g: int, dh: int) -> tuple[np.ndarray, np.ndarray]:
  """wv [D + 1, G, Dh] (one group) -> (shared [D + 1, Dh], maps B [G, Dh, Dh]) with wv[:, h] ~ shared @ B[h]."""
  stacked = wv.reshape(wv.shape[0], g * dh)
  u, s, vt = np.linalg.svd(stacked, full_matrices=False)
  r = min(dh, s.shape[0])
  shared = np.zeros((wv.shape[0], dh))
  maps = np.zeros((dh, g * dh))
  shared[:, :r] = u[:, :r] * s[:r]
  maps[:r] = vt[:r]
  return shared, maps.reshape(dh, g, dh).transpose(1, 0, 2)


def _fit_keys(wk: np.ndarray, g: int, dh: int) -> tuple[np.ndarray, np.ndarray]:
  """wk [D + 1, G, Dh] -> (shared [D + 1, Dh], complex scales c [G, Dh/2]) with pair f of head h ~ c[h, f] times
  pair f of the shared key (pairs (f, f + Dh/2) as complex numbers)."""
  half = dh // 2
  z = wk[..., :half] + 1j * wk[..., half:]                                  # [D + 1, G, Dh/2]
  shared = np.zeros((wk.shape[0], dh))
  scales = np.zeros((g, half), np.complex128)
  for f in range(half):
    u, s, vh = np.linalg.svd(z[:, :, f], full_matrices=False)               # [D + 1, G] = u diag(s) vh
    col = u[:, 0] * s[0]
    shared[:, f], shared[:, f + half] = col.real, col.imag
    scales[:, f] = vh[0]
  return shared, scales


def pool_kv_heads_svd(params: Any, num_kv_heads: int) -> Any:
  """Like `mtl.nn.attention.pool_kv_heads` (every multi-head `qkv` becomes `q` + `kv` with Hkv KV heads), but
  with the fits of the module docstring; each such module's `out` kernel [H, Dh, D] is rewritten too.
  Needs an even head dim (the RoPE pairs). Returns float32 numpy arrays in the converted modules."""
  def convert(tree: dict, path: str, g: int) -> dict:
    if "out" not in tree:
      raise ValueError(f"pool_kv_heads_svd: {path} has `qkv` but no `out` projection to fold the value maps into")
    qkv, out = dict(tree.pop("qkv")), dict(tree["out"])
    kern = np.asarray(qkv["kernel"], np.float64)
    d, _, h, dh = kern.shape
    if dh % 2:
      raise ValueError(f"pool_kv_heads_svd: {path} has odd head dim {dh}; the key fit works on RoPE pairs")
    wo = np.asarray(out["kernel"], np.float64)
    if wo.shape[:2] != (h, dh):
      raise ValueError(f"pool_kv_heads_svd: {path}/out/kernel must be [H={h}, Dh={dh}, D], got {wo.shape}")
    has_bias = "bias" in qkv
    bias = np.asarray(qkv["bias"], np.float64) if has_bias else np.zeros((3, h, dh))
    full = np.concatenate([kern, bias[None]], 0)                            # [D + 1, 3, H, Dh]
    half = dh // 2
    wq = full[:, 0].copy()
    kv = np.zeros((d + 1, 2, num_kv_heads, dh))
    wo_new = wo.copy()
    for j in range(num_kv_heads):
      heads = slice(j * g, (j + 1) * g)
      kv[:, 0, j], scales = _fit_keys(full[:, 1, heads], g, dh)
      kv[:, 1, j], maps = _fit_values(full[:, 2, heads], g, dh)
      for i, hh in enumerate(range(j * g, (j + 1) * g)):
        a, b = scales[i].real, scales[i].imag                               # q_f -> conj(c) q_f
        q1, q2 = full[:, 0, hh, :half], full[:, 0, hh, half:]
        wq[:, hh, :half], wq[:, hh, half:] = a * q1 + b * q2, a * q2 - b * q1
        wo_new[hh] = maps[i] @ wo[hh]
    tree["q"] = {"kernel": wq[:d].astype(np.float32)}
    tree["kv"] = {"kernel": kv[:d].astype(np.float32)}
    if has_bias:
      tree["q"]["bias"] = wq[d].astype(np.float32)
      tree["kv"]["bias"] = kv[d].astype(np.float32)
    tree["out"] = dict(out, kernel=wo_new.astype(np.float32))
    return tree

  return convert_qkv_modules(params, num_kv_heads, convert, "pool_kv_heads_svd")
