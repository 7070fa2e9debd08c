"""experiments.bench_attention: a tiny CPU run writes JSON rows and the summary table; backend checks."""
import json

import jax
import pytest

from experiments import bench_attention as ba


def test_tiny_cpu_run_writes_rows_and_table(tmp_path, capsys):
  out = tmp_path / "b.json"
  ba.main(["--json", str(out), "--seq_lens", "64,128", "--impls", "lightning_jnp,softmax_xla", "--heads", "2",
           "--head_dim", "16", "--block_size", "16", "--repeats", "1", "--decode", "--decode_lens", "64",
           "--decode_batch", "2"])
  data = json.loads(out.read_text())
  seq = [r for r in data["rows"] if r["section"] == "sequence"]
  assert {(r["impl"], r["mode"], r["seq_len"]) for r in seq} == {
      (i, m, n) for i in ("lightning_jnp", "softmax_xla") for m in ("fwd", "fwd+bwd") for n in (64, 128)}
  assert all(r["tokens_per_s"] > 0 and r["seconds"] > 0 for r in data["rows"])
  assert {r["impl"] for r in data["rows"] if r["section"] == "decode"} == {"softmax_decode_jnp", "linear_decode_jnp"}
  table = capsys.readouterr().out
  assert "| lightning_jnp | fwd+bwd |" in table and "L=128" in table


def test_summary_ratio_to_cudnn():
  rows = [{"section": "sequence", "impl": i, "mode": "fwd", "seq_len": 4096, "tokens_per_s": t}
          for i, t in (("softmax_cudnn", 2e6), ("lightning_chunked_bf16", 3e6))]
  table = ba.summary_table(rows)
  assert "| lightning_chunked_bf16 | fwd | 3.000M (1.50x) |" in table


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU refusal")
def test_compiled_kernels_refused_on_cpu(tmp_path):
  for impl in ("lightning_chunked_bf16", "lightning_mosaic", "softmax_cudnn"):
    with pytest.raises(ValueError, match="need another backend"):
      ba.parse_args(["--json", str(tmp_path / "x.json"), "--impls", impl])
