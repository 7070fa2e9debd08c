"""RoPE-aware SVD pooling of KV heads (mtl/nn/kv_pooling.py): exact when a group's heads share their keys up to a
complex scale per RoPE pair and their values up to a linear map (mean pooling is not); never farther from the
multi-head projections than the mean; the tree is the GQA model's."""
import jax
import numpy as np
import pytest

from mtl.nn.attention import SoftmaxAttention, pool_kv_heads
from mtl.nn.kv_pooling import pool_kv_heads_svd

H, DH, D = 4, 8, 16


def _mha_with_redundant_groups(seed=0, scale=1.0):
  """MHA params (rope) whose heads 2j, 2j+1 have keys equal up to a complex scale per RoPE pair and values
  equal up to a linear map: the structure GQA with 2 KV heads can represent exactly."""
  m = SoftmaxAttention(num_heads=H, head_dim=DH, causal=True, rope=True)
  x = scale * jax.random.normal(jax.random.key(seed), (2, 9, D))
  p = jax.tree.map(np.array, m.init(jax.random.key(seed + 1), x))["params"]
  rng = np.random.default_rng(seed)
  k, b = p["qkv"]["kernel"].copy(), p["qkv"]["bias"].copy()
  b[:] = rng.normal(size=b.shape)                                    # non-zero biases: they are fitted too
  half = DH // 2
  for j in range(0, H, 2):
    c = rng.normal(size=half) + 1j * rng.normal(size=half)           # head j+1 keys = c * head j keys (per pair)
    for w in (k[:, 1], b[None, 1]):
      z = c * (w[..., j, :half] + 1j * w[..., j, half:])
      w[..., j + 1, :half], w[..., j + 1, half:] = z.real, z.imag
    bmap = rng.normal(size=(DH, DH))                                 # head j+1 values = head j values @ B
    k[:, 2, j + 1] = k[:, 2, j] @ bmap
    b[2, j + 1] = b[2, j] @ bmap
  p["qkv"] = {"kernel": k, "bias": b}
  return m, p, x


def test_svd_pooling_is_exact_on_groups_gqa_can_represent():
  m, p, x = _mha_with_redundant_groups()
  want = np.asarray(m.apply({"params": p}, x), np.float64)
  gqa = SoftmaxAttention(num_heads=H, head_dim=DH, causal=True, rope=True, num_kv_heads=2)
  got = gqa.apply({"params": pool_kv_heads_svd(p, 2)}, x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
  mean = gqa.apply({"params": pool_kv_heads(p, 2)}, x)
  assert np.abs(np.asarray(mean) - want).max() > 0.05 * np.abs(want).max()     # the mean is not exact here


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_svd_fit_is_never_farther_than_the_mean(kv_heads):
  m = SoftmaxAttention(num_heads=H, head_dim=DH, causal=True, rope=True)
  x = jax.random.normal(jax.random.key(3), (1, 5, D))
  p = jax.tree.map(np.array, m.init(jax.random.key(4), x))["params"]
  p["qkv"]["kernel"][:, 1:] *= np.array([1e-3, 1.0, 1e3, 1.0])[None, None, :, None]   # badly scaled heads
  g = H // kv_heads
  half = DH // 2

  def residuals(pooled):
    """Per head, the weight-space error of the head's effective keys / values against the MHA head's."""
    wk, wv = p["qkv"]["kernel"][:, 1].astype(np.float64), p["qkv"]["kernel"][:, 2].astype(np.float64)
    kv, wo_new = pooled["kv"]["kernel"].astype(np.float64), pooled["out"]["kernel"].astype(np.float64)
    wq_old, wq_new = p["qkv"]["kernel"][:, 0].astype(np.float64), pooled["q"]["kernel"].astype(np.float64)
    err_k = err_v = 0.0
    for h in range(H):
      j = h // g
      # keys: the head's complex scale per pair is read off its query change (q' = conj(c) q)
      zq = wq_old[:, h, :half] + 1j * wq_old[:, h, half:]
      zq_new = wq_new[:, h, :half] + 1j * wq_new[:, h, half:]
      c = np.conj(np.sum(np.conj(zq) * zq_new, 0) / np.sum(np.abs(zq) ** 2, 0))
      zk = wk[:, h, :half] + 1j * wk[:, h, half:]
      zg = kv[:, 0, j, :half] + 1j * kv[:, 0, j, half:]
      err_k += np.sum(np.abs(zk - c * zg) ** 2)
      # values: the head's map B is read off its output-projection change (W_o' = B W_o)
      bmap = wo_new[h] @ np.linalg.pinv(p["out"]["kernel"][h].astype(np.float64))
      err_v += np.sum((wv[:, h] - kv[:, 1, j] @ bmap) ** 2)
    return err_k, err_v

  def mean_residuals():
    wk, wv = p["qkv"]["kernel"][:, 1].astype(np.float64), p["qkv"]["kernel"][:, 2].astype(np.float64)
    mk = wk.reshape(D, kv_heads, g, DH).mean(2)
    mv = wv.reshape(D, kv_heads, g, DH).mean(2)
    return (sum(np.sum((wk[:, h] - mk[:, h // g]) ** 2) for h in range(H)),
            sum(np.sum((wv[:, h] - mv[:, h // g]) ** 2) for h in range(H)))

  p_nobias = {k: (dict(v, bias=np.zeros_like(v["bias"])) if k == "qkv" else v) for k, v in p.items()}
  p = p_nobias                                  # the residuals above are on kernels; biases fitted as a row too
  svd_k, svd_v = residuals(pool_kv_heads_svd(p, kv_heads))
  mean_k, mean_v = mean_residuals()
  assert svd_k <= mean_k * (1 + 1e-6) and svd_v <= mean_v * (1 + 1e-6)
  assert svd_k < 0.9 * mean_k                     # and strictly better on these badly scaled heads


def test_tree_matches_gqa_model_and_errors():
  m, p, x = _mha_with_redundant_groups()
  gqa = SoftmaxAttention(num_heads=H, head_dim=DH, causal=True, rope=True, num_kv_heads=2)
  want = jax.tree.map(lambda a: a.shape, gqa.init(jax.random.key(0), x)["params"])
  assert jax.tree.map(lambda a: a.shape, pool_kv_heads_svd(p, 2)) == want
  with pytest.raises(ValueError, match="not a multiple of num_kv_heads 3"):
    pool_kv_heads_svd(p, 3)
  with pytest.raises(ValueError, match="must be positive"):
    pool_kv_heads_svd(p, 0)
  with pytest.raises(ValueError, match="no multi-head"):
    pool_kv_heads_svd({"dense": {"kernel": np.zeros((2, 2))}}, 1)
  with pytest.raises(ValueError, match="no `out` projection"):
    pool_kv_heads_svd({"attn": {"qkv": p["qkv"]}}, 2)
