"""experiments.bench_decode: KV-variant names."""
import pytest

from experiments.bench_decode import parse_kv_variant


def test_parse_kv_variant():
  assert parse_kv_variant("mha", 16) == {"num_kv_heads": None, "kv_share": 1}
  assert parse_kv_variant("gqa4+cla2", 16) == {"num_kv_heads": 4, "kv_share": 2}
  assert parse_kv_variant("mqa", 16) == {"num_kv_heads": 1, "kv_share": 1}
  with pytest.raises(ValueError, match="unknown KV variant"):
    parse_kv_variant("gqa", 16)
  with pytest.raises(ValueError, match="do not divide"):
    parse_kv_variant("gqa3", 16)
