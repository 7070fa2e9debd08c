"""experiments/bench_lean_decode.py on CPU (interpret mode, tiny shapes): every implementation runs, its output
matches the reference, the JSON rows and the table say what ran."""
import json

import pytest

from experiments import bench_lean_decode


def test_smoke_run_writes_checked_rows(tmp_path):
  out = tmp_path / "lean.json"
  rows = bench_lean_decode.main(["--json", str(out), "--smoke", "--shapes", "b2 h2 100/37 (smoke)",
                                 "--dtype", "float32", "--programs", "3", "--k_splits", "1,2",
                                 "--iters", "1", "--repeats", "1", "--kernel_only", "--tile"])
  impls = [r["impl"] for r in rows]
  assert impls == ["lean_p3", "leanseg_p3", "leantile_p3", "leankernel_p3", "split1", "split2", "reference"]
  for r in rows:
    assert "error" not in r, r
    assert r["seconds"] > 0
    if r["impl"] == "leankernel_p3":
      assert r["max_abs_err"] is None  # the kernel alone returns no attention output
    else:
      assert r["max_abs_err"] < 1e-5, r
  assert rows[0]["programs"] == 3 and rows[4]["programs"] is None
  saved = json.loads(out.read_text())
  assert saved["rows"] == rows and saved["backend"] == "cpu"
  table = bench_lean_decode.summary(rows)
  assert "| b2 h2 100/37 (smoke) |" in table and table.count("\n") == 2


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="unknown shape"):
    bench_lean_decode.main(["--json", "/dev/null", "--smoke", "--shapes", "b9 nope"])
  with pytest.raises(ValueError, match="must be positive"):
    bench_lean_decode.main(["--json", "/dev/null", "--smoke", "--iters", "0"])
  assert bench_lean_decode.jax_k_splits(5120) == 8 and bench_lean_decode.jax_k_splits(8192) == 16
