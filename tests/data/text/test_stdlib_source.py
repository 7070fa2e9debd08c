import numpy as np
import pytest

from mtl.data.text import stdlib_source as ss


def test_split_files_disjoint_and_chunks(tmp_path):
  for i in range(60):
    (tmp_path / f"m{i}.py").write_text(f"x = {i}\n" * 20)
  (tmp_path / "test").mkdir()
  (tmp_path / "test" / "t.py").write_text("skipped")
  files = ss.list_files(str(tmp_path))
  assert "test/t.py" not in files and len(files) == 60
  root = str(tmp_path)
  total = sum(len(ss.corpus(s, root)) for s in ss.SPLITS)
  assert total == sum(len(f"x = {i}\n" * 20) + 2 for i in range(60))
  n = ss.num_chunks("train", 16, root)
  c = ss.chunk("train", n - 1, 16, root)
  np.testing.assert_array_equal(c, ss.corpus("train", root)[(n - 1) * 16:n * 16])
  with pytest.raises(ValueError, match="out of range"):
    ss.chunk("train", n, 16, root)


def test_real_stdlib_has_source():
  files = ss.list_files()
  assert "os.py" in files and len(files) > 100
