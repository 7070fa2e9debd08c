import numpy as np
import pytest

from mtl.data import compose


def test_overlay_pair_matches_loop_reference():
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 256, (2, 3, 28, 28)).astype(np.uint8)
  out = compose.overlay_pair(a, b, 36)
  ref = np.zeros((3, 36, 36), np.uint8)
  for n in range(3):
    for y in range(28):
      for x in range(28):
        ref[n, y, x] = max(ref[n, y, x], a[n, y, x])
        ref[n, y + 8, x + 8] = max(ref[n, y + 8, x + 8], b[n, y, x])
  np.testing.assert_array_equal(out, ref)
  with pytest.raises(ValueError, match="item"):
    compose.overlay_pair(a[:, :20], b[:, :20])


@pytest.mark.parametrize("n", [2, 3, 17])
def test_pair_indices_is_derangement(n):
  p = compose.pair_indices(n, np.random.default_rng(n))
  assert sorted(p) == list(range(n)) and np.all(p != np.arange(n))


def test_render_scene_occlusion_and_layers():
  items = np.zeros((2, 28, 28), np.uint8)
  items[0, 5:20, 5:20] = 200
  items[1, 0:10, 0:10] = 100
  pos = np.array([[0, 0], [10, 10]])
  depth = np.array([0.8, 0.2], np.float32)  # item 1 is nearer and painted last.
  image, layers = compose.render_scene(items, pos, depth, 40)
  assert layers[12, 12] == 2 and image[12, 12] == round(100 * (1 - compose.FOG * 0.2))  # occluded by item 1
  assert layers[6, 6] == 1 and image[6, 6] == round(200 * (1 - compose.FOG * 0.8))
  assert layers[0, 0] == 0 and image[0, 0] == 0 and layers[25, 25] == 0
  with pytest.raises(ValueError, match="fit"):
    compose.render_scene(items, np.array([[0, 0], [13, 0]]), depth, 40)


def test_dense_targets_match_pixel_loop():
  rng = np.random.default_rng(1)
  layers = rng.integers(0, 4, (2, 7, 6)).astype(np.uint8)
  classes = rng.integers(0, 10, (2, 4))
  depths = rng.uniform(0.1, 0.9, (2, 4)).astype(np.float32)
  semseg, depth, edges = compose.dense_targets(layers, classes, depths)
  for b in range(2):
    for y in range(7):
      for x in range(6):
        j = int(layers[b, y, x])
        assert semseg[b, y, x] == (0 if j == 0 else classes[b, j - 1] + 1)
        assert depth[b, y, x] == (1.0 if j == 0 else depths[b, j - 1])
        nbrs = [(y + dy, x + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= y + dy < 7 and 0 <= x + dx < 6]
        assert edges[b, y, x] == int(any(layers[b, v, u] != j for v, u in nbrs))
  assert semseg.dtype == np.int32 and depth.dtype == np.float32 and edges.dtype == np.int32
