"""Fashion scenes at 32x32 / 16x16: pooled images, subsampled layer maps, targets derived at the small size."""
import numpy as np
import pytest

from mtl.data import compose
from mtl.data.builders import fashion_scenes_lowres as lowres
from mtl.data.registry import get_spec


def _records():
  rng = np.random.default_rng(0)
  layers = np.zeros((2, 64, 64), np.uint8)
  layers[0, 10:40, 8:30] = 1
  layers[0, 20:50, 25:60] = 2
  layers[1, 0:64, 0:32] = 1
  return {"image": rng.integers(0, 256, (2, 64, 64)).astype(np.uint8), "layers": layers,
          "classes": np.array([[3, 7, -1, -1], [0, -1, -1, -1]], np.int32),
          "depths": np.array([[0.3, 0.6, 0, 0], [0.5, 0, 0, 0]], np.float32)}


@pytest.mark.parametrize("res", [32, 16])
def test_downsampled_targets_match_a_plain_reference(res):
  rec = _records()
  f = 64 // res
  spec = get_spec(f"fashion_scenes{res}")
  assert spec.input_shape == (res, res, 1)
  tasks = spec.tasks
  out = spec.collate(rec, tasks)
  img = rec["image"].astype(np.float64).reshape(2, res, f, res, f).mean((2, 4))
  np.testing.assert_allclose(out["image"][..., 0], np.round(img) / 255.0, atol=1e-6)
  small = rec["layers"][:, f // 2::f, f // 2::f]
  semseg, depth, edges = compose.dense_targets(small, rec["classes"], rec["depths"])
  np.testing.assert_array_equal(out["semseg"], semseg)
  np.testing.assert_array_equal(out["depth"], depth)
  np.testing.assert_array_equal(out["edges"], edges)
  # Edge pixels of the small map: item 1 of scene 1 covers columns 0..31 of 64, so the boundary is at res / 2.
  assert out["edges"][1, :, res // 2 - 1].all() and out["edges"][1, :, res // 2].all()
  assert out["edges"][1].sum() == 2 * res


def test_bad_resolution_is_named():
  with pytest.raises(ValueError, match="resolution must be one of"):
    lowres.spec(48)
  with pytest.raises(ValueError, match="cannot be downsampled"):
    lowres.downsample({"image": np.zeros((1, 6, 6), np.uint8), "layers": np.zeros((1, 6, 6), np.uint8)}, 4)
