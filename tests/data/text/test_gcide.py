import gzip
import os

import pytest

from mtl.data.text import gcide

ENTRIES = [
    ("Ablation", 'Ablation \\Ab*la"tion\\, n. [L. ablatio, fr. ablatus p. p. of\n'
     "   auferre to carry away.]\n   1. A carrying or taking away; removal. --Jer. Taylor.\n"
     "      [1913 Webster]\n\n   2. (Med.) Extirpation.\n      [1913 Webster]\n\n"),
    ("Abjurer", 'Abjurer \\Ab*jur"er\\, n.\n   One who abjures.\n   [1913 Webster]\n\n'),
    # A sub-entry: the index points into its parent's text -> skipped.
    ("Cockling sea", 'Cockle \\Coc"kle\\, v. t.\n   To wrinkle.\n   [1913 Webster]\n\n'),
]


def _b64(n):
  a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  s = ""
  while True:
    s = a[n % 64] + s
    n //= 64
    if not n:
      return s


def test_b64_decode():
  assert gcide.b64_decode("BQ+") == 1 * 64 * 64 + 16 * 64 + 62
  assert gcide.b64_decode("A") == 0
  for n in (0, 63, 64, 123456):
    assert gcide.b64_decode(_b64(n)) == n
  with pytest.raises(ValueError, match="digit"):
    gcide.b64_decode("A*")


def test_parse_entry():
  assert gcide.parse_entry(ENTRIES[0][1], "ablation") == (
      "A carrying or taking away; removal.")
  assert gcide.parse_entry(ENTRIES[1][1], "Abjurer") == "One who abjures."
  assert gcide.parse_entry(ENTRIES[2][1], "Cockling sea") is None
  long = 'Foo \\Foo\\, n.\n   ' + "word " * 50 + "\n"
  assert len(gcide.parse_entry(long, "foo", max_chars=30)) <= 30


def test_load_pairs_from_small_files(tmp_path):
  blob, index = b"", []
  for word, text in ENTRIES:
    raw = text.encode()
    index.append(f"{word}\t{_b64(len(blob))}\t{_b64(len(raw))}")
    blob += raw
  d, i = tmp_path / "x.dict.dz", tmp_path / "x.index"
  with gzip.open(d, "wb") as f:
    f.write(blob)
  i.write_text("\n".join(index) + "\n")
  pairs = gcide.load_pairs(str(d), str(i))
  # 'Cockling sea' is a sub-entry and contains a space: dropped.
  assert pairs == (("ablation", "A carrying or taking away; removal."),
                   ("abjurer", "One who abjures."))


def test_splits_are_disjoint_and_stable():
  words = [f"w{i}" for i in range(2000)]
  pairs = [(w, "d") for w in words]
  parts = {s: {w for w, _ in gcide.split_pairs(pairs, s)} for s in gcide.SPLITS}
  assert sum(len(p) for p in parts.values()) == 2000
  assert not parts["train"] & parts["test"]
  assert 0.85 < len(parts["train"]) / 2000 < 0.95
  assert gcide.split_of("Word") == gcide.split_of("word")
  with pytest.raises(ValueError, match="split"):
    gcide.split_pairs(pairs, "dev")


@pytest.mark.skipif(not os.path.exists(gcide.DICT_PATH), reason="dict-gcide not installed")
def test_real_dictionary_sample():
  # Parse the first 2000 index entries of the real dictionary only (fast).
  idx = gcide.read_index()
  assert len(idx) > 100_000
  with gzip.open(gcide.DICT_PATH) as f:
    data = f.read(idx[2000][1] + idx[2000][2] + 1)
  got = {}
  for w, off, n in idx[:2000]:
    d = gcide.parse_entry(data[off:off + n].decode("utf-8", "replace"), w)
    if d:
      got[w.lower()] = d
  assert len(got) > 300
  assert "abjurer" in got and got["abjurer"].startswith("One who abjures")
