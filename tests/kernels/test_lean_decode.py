"""Lean Attention and grouped-query decode kernels (interpret mode) vs a float64 numpy reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import reference as ref
from kernels.gqa_decode import gqa_decode
from kernels.lean_decode import lean_decode, lean_schedule
from kernels.softmax_decode import softmax_decode


def np_decode(q, k, v, lengths):
  """float64 GQA decode: q [B, H, D], k, v [B, Hkv, L, D]; query head h reads KV head h // (H / Hkv)."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  b, h, d = q.shape
  g = h // k.shape[1]
  out = np.zeros((b, h, v.shape[-1]))
  for i in range(b):
    n = int(lengths[i])
    for j in range(h):
      s = k[i, j // g, :n] @ q[i, j] / np.sqrt(d)
      p = np.exp(s - s.max())
      out[i, j] = p @ v[i, j // g, :n] / p.sum()
  return out


def _inputs(seed, b, h, hkv, lmax, d, q_scale=1.0):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = q_scale * jax.random.normal(ks[0], (b, h, d))
  return q, jax.random.normal(ks[1], (b, hkv, lmax, d)), jax.random.normal(ks[2], (b, hkv, lmax, d))


# (B, H, Hkv, Lmax, block_k, lengths, programs): lengths not multiples of block_k, B * Hkv not dividing the
# programs, more programs than tiles, length-1 rows, a row of 16 tiles split over several programs.
CASES = [
    (3, 4, 2, 64, 16, [1, 37, 64], 5),
    (3, 4, 2, 64, 16, [1, 37, 64], 40),
    (2, 6, 1, 32, 8, [17, 3], 4),       # MQA, G = 6
    (1, 3, 3, 256, 16, [256], 3),       # MHA, one long row over 3 programs
    (5, 2, 2, 16, 16, [1, 2, 16, 5, 9], 7),
]


@pytest.mark.parametrize("index,merge", [("offsets", "pallas"), ("tile", "pallas"), ("offsets", "segment")])
@pytest.mark.parametrize("b,h,hkv,lmax,bk,lengths,progs", CASES)
def test_lean_decode_matches_float64_reference(b, h, hkv, lmax, bk, lengths, progs, index, merge):
  q, k, v = _inputs(0, b, h, hkv, lmax, 8)
  lengths = jnp.array(lengths)
  got = lean_decode(q, k, v, lengths, block_k=bk, num_programs=progs, interpret=True, index=index, merge=merge)
  np.testing.assert_allclose(got, np_decode(q, k, v, lengths), rtol=2e-5, atol=2e-6)


def test_lean_decode_badly_scaled_and_degenerate():
  q, k, v = _inputs(1, 2, 4, 2, 64, 8, q_scale=300.0)  # logits ~1e3: needs the running max
  lengths = jnp.array([50, 7])
  got = lean_decode(q, k, v, lengths, block_k=16, num_programs=3, interpret=True)
  np.testing.assert_allclose(got, np_decode(q, k, v, lengths), rtol=1e-4, atol=1e-5)
  # Identical keys: uniform weights, the output is the mean of the valid values.
  k_eq = jnp.ones_like(k)
  got = lean_decode(q, k_eq, v, lengths, block_k=16, num_programs=3, interpret=True)
  want = np.stack([np.repeat(np.asarray(v[i, :, :n]).mean(1), 2, axis=0) for i, n in enumerate([50, 7])])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Cache entries past the length do not matter.
  poisoned = k.at[1, :, 7:].set(1e3), v.at[1, :, 7:].set(1e3)
  got2 = lean_decode(q, *poisoned, lengths, block_k=16, num_programs=3, interpret=True)
  np.testing.assert_allclose(got2, lean_decode(q, k, v, lengths, block_k=16, num_programs=3, interpret=True),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lengths,hkv,progs", [([1, 37, 64], 2, 5), ([64] * 4, 3, 7), ([1, 1], 1, 9)])
def test_lean_schedule_gives_equal_contiguous_shares(lengths, hkv, progs):
  s = jax.device_get(lean_schedule(jnp.array(lengths), hkv, 16, progs))
  tiles = np.repeat([max(1, -(-n // 16)) for n in lengths], hkv)
  assert s["offsets"].tolist() == [0] + np.cumsum(tiles).tolist()
  total = tiles.sum()
  share = np.diff(s["starts"])
  assert s["starts"][0] == 0 and s["starts"][-1] == total       # every tile exactly once, in order
  assert share.max() - share.min() <= 1 and share.min() == total // progs
  for p in range(progs):                                        # first_row holds the program's first tile
    if share[p]:
      r = s["first_row"][p]
      assert s["offsets"][r] <= s["starts"][p] < s["offsets"][r + 1]
  # The per-tile table (index='tile'): tile t lies in row tile_row[t] at position tile_j[t], plain loop.
  t_max = total + 3
  s = jax.device_get(lean_schedule(jnp.array(lengths), hkv, 16, progs, max_tiles=t_max))
  want_row, want_j = [], []
  for r, n in enumerate(tiles):
    want_row += [r] * int(n)
    want_j += list(range(int(n)))
  assert s["tile_row"][:total].tolist() == want_row and s["tile_j"][:total].tolist() == want_j
  assert s["tile_row"].shape == (t_max,)


@pytest.mark.parametrize("h,hkv,splits", [(4, 2, 1), (4, 2, 2), (6, 1, 2), (4, 4, 2)])
def test_gqa_decode_matches_reference(h, hkv, splits):
  q, k, v = _inputs(2, 2, h, hkv, 64, 8)
  lengths = jnp.array([21, 64])  # 21: the second split of row 0 is empty
  want = np_decode(q, k, v, lengths)
  np.testing.assert_allclose(gqa_decode(q, k, v, lengths, block_k=16, k_splits=splits, interpret=True), want,
                             rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(ref.softmax_decode_step(q, k, v, lengths), want, rtol=2e-5, atol=2e-6)
  # softmax_decode sends grouped caches to the grouped kernel.
  np.testing.assert_allclose(softmax_decode(q, k, v, lengths, block_k=16, k_splits=splits, interpret=True),
                             want, rtol=2e-5, atol=2e-6)


def test_grouped_equals_multi_head_with_repeated_kv():
  q, k, v = _inputs(3, 2, 4, 2, 32, 8)
  lengths = jnp.array([5, 32])
  rep = lambda a: jnp.repeat(a, 2, axis=1)
  np.testing.assert_allclose(ref.softmax_decode_step(q, k, v, lengths),
                             ref.softmax_decode_step(q, rep(k), rep(v), lengths), rtol=1e-6, atol=1e-6)


def test_bad_shapes_raise():
  q, k, v = _inputs(4, 1, 4, 3, 32, 8)
  with pytest.raises(ValueError, match="multiple of Hkv"):
    lean_decode(q, k, v, jnp.array([3]), block_k=16, num_programs=2, interpret=True)
  q, k, v = _inputs(4, 1, 4, 2, 40, 8)
  with pytest.raises(ValueError, match="multiple of block_k"):
    lean_decode(q, k, v, jnp.array([3]), block_k=16, num_programs=2, interpret=True)
  with pytest.raises(ValueError, match="num_programs"):
    lean_decode(q, k, v, jnp.array([3]), block_k=8, num_programs=0, interpret=True)
  with pytest.raises(ValueError, match="merge must be"):
    lean_decode(q, k, v, jnp.array([3]), block_k=8, num_programs=2, interpret=True, merge="tree")
  with pytest.raises(ValueError, match="index must be"):
    lean_decode(q, k, v, jnp.array([3]), block_k=8, num_programs=2, interpret=True, index="rows")
  with pytest.raises(ValueError, match="no Mosaic"):
    softmax_decode(q, k, v, jnp.array([3]), block_k=8, impl="mosaic", interpret=True)
